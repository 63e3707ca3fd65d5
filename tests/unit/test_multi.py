"""K trials at once (models.training.stacked) against one-at-a-time training (models.training.loop)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.emin import emin_hsi, masked_ce
from models.nets import Hydra
from models.synthetic import synthetic_hsi
from models.training.hsi import train_hsi
from models.training.stacked import check_stackable, stacked_losses, train_hsi_stacked
from models.training.stacked_hydra import StackedAdam, StackedHydra
from schemas.training import HSITrainConfig


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return synthetic_hsi(n=400, in_dims=(12, 9, 15), n_classes=4, seed=3, separation=1.5)


def _cfg(**kw: object) -> HSITrainConfig:
    base: dict[str, object] = {
        "store": "unused", "epochs": 3, "batch_size": 64, "patience": None, "device": "cpu",
        "width": 16, "hidden": [16, 16],
    }  # fmt: skip
    return HSITrainConfig.model_validate(base | kw)


def test_forward_matches_hydra_per_trial() -> None:
    torch.manual_seed(0)
    nets = [Hydra([5, 3], 4, width=w, hidden=h) for w, h in [(8, [6, 7]), (5, [9, 4]), (8, [8, 8])]]
    stacked = StackedHydra.from_models(nets)
    x = torch.randn(3, 2, 10, 5)
    mask = torch.rand(3, 2, 10) < 0.7
    out = stacked(x, mask)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k], net(x[k], mask[k]), rtol=1e-5, atol=1e-6)
    for net in nets:
        net.eval()
    stacked.eval()
    out = stacked(x[0], mask[0])  # one batch shared by every trial
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k], net(x[0], mask[0]), rtol=1e-5, atol=1e-6)
    back = stacked.unstack(1)
    for (name, a), b in zip(nets[1].state_dict().items(), back.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_one_step_equals_adam_per_trial() -> None:
    """Same init, one optimiser step: stacked Adam with [K] lr/wd = torch.optim.Adam per trial."""
    torch.manual_seed(1)
    nets = [Hydra([6, 4], 3, width=w, hidden=[w, 5]) for w in (7, 4, 6)]
    lrs, wds, alphas = [1e-2, 3e-3, 1e-3], [0.0, 1e-2, 1e-4], [1.0, 0.5, 0.05]
    stacked = StackedHydra.from_models(nets)
    x = torch.randn(3, 2, 16, 6)
    mask = torch.rand(3, 2, 16) < 0.8
    y = torch.randint(0, 3, (3, 16))
    opt = StackedAdam(list(stacked.parameters()), lrs, wds)
    ce, em = stacked_losses(stacked(x, mask), y, mask)
    a = torch.tensor(alphas)
    opt.zero_grad()
    (a * ce + (1 - a) * em).sum().backward()
    opt.step()
    for k, net in enumerate(nets):
        o = torch.optim.Adam(net.parameters(), lr=lrs[k], weight_decay=wds[k])
        logits = net(x[k], mask[k])
        ce_k, em_k = masked_ce(logits, y[k], mask[k]), emin_hsi(logits, mask[k])
        torch.testing.assert_close(ce[k], ce_k)
        torch.testing.assert_close(em[k], em_k)
        (alphas[k] * ce_k + (1 - alphas[k]) * em_k).backward()
        o.step()
        for (name, p), q in zip(
            net.state_dict().items(), stacked.unstack(k).state_dict().values(), strict=True
        ):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_stacked_training_equals_one_at_a_time(data) -> None:  # type: ignore[no-untyped-def]
    """K=3 (different seeds, widths, lr, wd, α), no dropout: per-epoch losses and final metrics match."""
    configs = [
        _cfg(seed=0, lr=3e-3),
        _cfg(seed=1, width=10, hidden=[12, 8], lr=1e-3, weight_decay=1e-3, mode="emin", alpha_value=0.3),
        _cfg(seed=0, lr=3e-3),  # identical to the first: identical results
    ]
    stacked = train_hsi_stacked(configs, data)
    for c, r in zip(configs, stacked, strict=True):
        ref = train_hsi(c, data)
        got = [h["train_loss"] for h in r.history]
        want = [h["train_loss"] for h in ref.history]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            [h["val_macro_accuracy"] for h in r.history], [h["val_macro_accuracy"] for h in ref.history]
        )
        assert r.metrics["best_epoch"] == ref.metrics["best_epoch"]
        for (name, a), b in zip(ref.model.state_dict().items(), r.model.state_dict().values(), strict=True):
            # a bias right before BatchNorm has zero true gradient: Adam turns round-off noise into
            # ±lr steps there, in both runs differently; BN cancels it (and the running mean it shifts), so neither is compared
            skip = name.startswith("backbone.linears.") and name.endswith(".bias")
            if not (skip or name.endswith(".running_mean")):
                torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
        # round-off can flip a near-tie prediction: at most one test sample's worth of macro accuracy
        diff = r.metrics["test"]["fused"]["macro_accuracy"] - ref.metrics["test"]["fused"]["macro_accuracy"]
        assert abs(diff) <= 0.02
    assert [h["train_loss"] for h in stacked[0].history] == [h["train_loss"] for h in stacked[2].history]


def test_early_stopping_per_trial(data) -> None:  # type: ignore[no-untyped-def]
    configs = [_cfg(seed=s, epochs=6, patience=p, lr=1e-1) for s, p in [(0, 1), (1, None)]]
    stacked = train_hsi_stacked(configs, data)
    for c, r in zip(configs, stacked, strict=True):
        ref = train_hsi(c, data)
        assert r.metrics["epochs_run"] == ref.metrics["epochs_run"]
        assert math.isclose(
            r.metrics["val"]["fused"]["macro_accuracy"], ref.metrics["val"]["fused"]["macro_accuracy"]
        )


def test_dropout_runs_agree_in_distribution(data) -> None:  # type: ignore[no-untyped-def]
    """With dropout the masks differ from one-at-a-time runs: compare accuracy over seeds, not bits."""
    configs = [_cfg(seed=s, dropout=0.2, epochs=4, lr=5e-3) for s in range(4)]
    stacked = [r.metrics["test"]["fused"]["macro_accuracy"] for r in train_hsi_stacked(configs, data)]
    single = [train_hsi(c, data).metrics["test"]["fused"]["macro_accuracy"] for c in configs]
    assert min(stacked) > 0.4 and min(single) > 0.4  # 4 classes: chance is 0.25
    assert abs(np.mean(stacked) - np.mean(single)) < 0.1


def test_check_stackable_rejects_mixed_families() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        check_stackable([_cfg(), _cfg(batch_size=128)])
    with pytest.raises(ValueError, match="layers"):
        check_stackable([_cfg(), _cfg(hidden=[16])])
    with pytest.raises(ValueError, match="mgda"):
        check_stackable([_cfg(mode="emin", alpha="sampled")])
    with pytest.raises(ValueError, match="mgda_normalization"):
        check_stackable(
            [_cfg(mode="emin", alpha="mgda"), _cfg(mode="emin", alpha="mgda", mgda_normalization="l2")]
        )


@pytest.mark.parametrize("norm", ["none", "loss+"])
def test_stacked_mgda_equals_one_at_a_time(data, norm: str) -> None:  # type: ignore[no-untyped-def]
    """Per-trial MGDA α in a stack (beside a fixed-α trial) follows one-at-a-time MGDA training."""
    configs = [
        _cfg(seed=0, lr=3e-3, mode="emin", alpha="mgda", mgda_normalization=norm),
        _cfg(seed=1, width=12, lr=1e-3, mode="emin", alpha="fixed", alpha_value=0.2, mgda_normalization=norm),
        _cfg(seed=2, width=8, hidden=[8, 12], lr=2e-3, mode="emin", alpha="mgda", mgda_normalization=norm),
    ]
    for c, r in zip(configs, train_hsi_stacked(configs, data), strict=True):
        ref = train_hsi(c, data)
        for key in ("train_loss", "alpha"):
            np.testing.assert_allclose(
                [h[key] for h in r.history], [h[key] for h in ref.history], rtol=1e-3, atol=1e-5, err_msg=key
            )
