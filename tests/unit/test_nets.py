"""Networks: masked batch norm vs nn.BatchNorm1d, Hydra vs an explicit per-modality reference, shapes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from models.nets import (
    VGG_CFGS,
    Hydra,
    MaskedBatchNorm1d,
    ModalityMLP,
    PerModalityMLPs,
    VGGRegressor,
    pack_modalities,
)

IN_DIMS = [7, 3, 12, 5]


class _CountCalls(TorchFunctionMode):
    """Counts every torch function called while active."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self.calls[getattr(func, "__name__", str(func))] += 1
        return func(*args, **(kwargs or {}))


def _copy_bn(bn: nn.BatchNorm1d) -> nn.BatchNorm1d:
    ref = nn.BatchNorm1d(bn.num_features, momentum=bn.momentum).double()
    ref.load_state_dict(bn.state_dict())
    return ref


@pytest.mark.parametrize("momentum", [0.1, None])
def test_masked_batchnorm_equals_batchnorm_on_present_rows(momentum: float | None) -> None:
    g = torch.Generator().manual_seed(0)
    bn = MaskedBatchNorm1d(6, momentum=momentum).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2, generator=g)
        bn.bias.uniform_(-1, 1, generator=g)
    ref = _copy_bn(bn)
    for _ in range(3):
        x = torch.randn(20, 6, generator=g, dtype=torch.float64) * 3 + 1
        mask = torch.rand(20, generator=g) < 0.6
        x_noisy = x.clone()
        x_noisy[~mask] = 1e6  # absent rows must not influence anything
        y = bn(x_noisy, mask)
        y_ref = ref(x[mask])
        torch.testing.assert_close(y[mask], y_ref)
        assert torch.isfinite(y).all()
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    assert bn.num_batches_tracked.item() == ref.num_batches_tracked.item() == 3


def test_masked_batchnorm_without_mask_or_in_eval_is_batchnorm() -> None:
    bn = MaskedBatchNorm1d(4).double()
    ref = _copy_bn(bn)
    x = torch.randn(10, 4, dtype=torch.float64)
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn(x, torch.ones(10, dtype=torch.bool)), ref(x))
    bn.eval()
    ref.eval()
    mask = torch.arange(10) < 3
    torch.testing.assert_close(bn(x, mask), ref(x))  # eval: running stats, per-row


def test_masked_batchnorm_keeps_running_stats_when_under_two_rows() -> None:
    bn = MaskedBatchNorm1d(3)
    before = bn.running_mean.clone(), bn.running_var.clone()
    y = bn(torch.randn(5, 3), torch.tensor([False, True, False, False, False]))
    assert torch.isfinite(y).all()
    torch.testing.assert_close(bn.running_mean, before[0])
    torch.testing.assert_close(bn.running_var, before[1])


def test_modality_mlp_structure_and_mask() -> None:
    torch.manual_seed(0)
    net = ModalityMLP(9, 4, hidden=(30, 20, 10), dropout=0.2).double()
    kinds = [type(m).__name__.replace("FP32Linear", "Linear") for m in net.modules()]  # head: FP32Linear
    assert (
        kinds.count("Linear") == 4 and kinds.count("MaskedBatchNorm1d") == 3 and kinds.count("Dropout") == 1
    )
    x = torch.randn(16, 9, dtype=torch.float64)
    mask = torch.arange(16) % 3 != 0
    x_nan = x.clone()
    x_nan[~mask] = float("nan")
    net.eval()  # dropout off; compare masked batch against present rows alone
    out = net(x_nan, mask)
    assert out.shape == (16, 4) and torch.isfinite(out).all()
    torch.testing.assert_close(out[mask], net(x[mask]))
    net.train()
    torch.manual_seed(1)
    out_t = net(x_nan, mask)
    assert torch.isfinite(out_t).all()
    for m in net.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    a = net(x_nan, mask)[mask]
    b = net(x[mask])  # training-mode BN over present rows only gives the same outputs
    torch.testing.assert_close(a, b)


def test_per_modality_mlps_stack_and_dict_input() -> None:
    torch.manual_seed(0)
    names = ["a", "b", "c", "d"]
    model = PerModalityMLPs(IN_DIMS, 5, hidden=[(10,), (12, 11), (20, 20, 20), (15, 10)], names=names).eval()
    xs = [torch.randn(8, d) for d in IN_DIMS]
    out = model(xs)
    assert out.shape == (4, 8, 5)
    for i, net in enumerate(model.nets):
        torch.testing.assert_close(out[i], net(xs[i]))
    torch.testing.assert_close(model({n: x for n, x in zip(names, xs, strict=True)}), out)
    mask = torch.rand(4, 8) < 0.5
    xs_nan = [torch.where(mask[i, :, None], x, torch.nan) for i, x in enumerate(xs)]
    out_m = model(xs_nan, mask)
    assert torch.isfinite(out_m).all()
    torch.testing.assert_close(out_m[mask], out[mask])
    with pytest.raises(ValueError):
        PerModalityMLPs(IN_DIMS, 5, hidden=[(10,), (10,)])


def _hydra(seed: int = 0, **kw: Any) -> Hydra:
    torch.manual_seed(seed)
    model = Hydra(IN_DIMS, 6, width=16, hidden=(24, 20), **kw).double()
    with torch.no_grad():  # non-trivial running stats and affine parameters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model


def _inputs(b: int, seed: int = 1) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand(b, d, generator=g, dtype=torch.float64) * 1.5 for d in IN_DIMS]
    mask = torch.rand(len(IN_DIMS), b, generator=g) < 0.7
    mask[:, 0] = True
    return xs, mask


def _reference_hydra(
    model: Hydra, xs: list[torch.Tensor], mask: torch.Tensor, train: bool
) -> list[np.ndarray]:
    """Explicit per-modality loop in numpy from the model's weights (no call into the model)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    hs = []
    for m, x in enumerate(xs):  # the modality-specific input layer, one small matmul each
        d = x.shape[1]
        h = x.numpy() @ sd["in_weight"][m, :d] + sd["in_bias"][m]
        hs.append(np.maximum(h, 0.0))
    pres = mask.numpy()
    for i in range(2):
        hs = [
            h @ sd[f"backbone.linears.{i}.weight"].T + sd.get(f"backbone.linears.{i}.bias", 0.0) for h in hs
        ]
        if train:  # batch statistics over the present rows of all modalities together
            rows = np.concatenate([h[pres[m]] for m, h in enumerate(hs)])
            mean, var = rows.mean(0), rows.var(0)
        else:
            mean, var = sd[f"backbone.norms.{i}.running_mean"], sd[f"backbone.norms.{i}.running_var"]
        w, b = sd[f"backbone.norms.{i}.weight"], sd[f"backbone.norms.{i}.bias"]
        hs = [np.maximum((h - mean) / np.sqrt(var + 1e-5) * w + b, 0.0) for h in hs]
    return [h @ sd["head.weight"].T + sd["head.bias"] for h in hs]


@pytest.mark.parametrize("train", [False, True])
def test_hydra_matches_per_modality_reference(train: bool) -> None:
    model = _hydra()
    model.train(train)
    xs, mask = _inputs(11)
    ref = _reference_hydra(model, xs, mask, train)
    xs_nan = [torch.where(mask[i, :, None], x, torch.nan) for i, x in enumerate(xs)]
    out = model(xs_nan, mask)
    assert out.shape == (4, 11, 6) and torch.isfinite(out).all()
    for m in range(4):
        np.testing.assert_allclose(
            out[m][mask[m]].detach().numpy(), ref[m][mask[m].numpy()], rtol=1e-10, atol=1e-12
        )
    if not train:  # eval: absent entries are still produced, as for a zero input
        np.testing.assert_allclose(
            out[1][~mask[1]].detach().numpy(),
            _reference_hydra(model, [torch.zeros_like(x) for x in xs], mask, False)[1][~mask[1].numpy()],
            rtol=1e-10,
        )


def test_hydra_packed_input_nan_padding_and_absent_rows_do_not_leak() -> None:
    model = _hydra().train()
    xs, mask = _inputs(9)
    packed = pack_modalities(xs)
    assert packed.shape == (4, 9, 12) and (packed[1, :, 3:] == 0).all()
    junk = packed.clone()
    pad = torch.arange(12)[None, :] >= torch.tensor(IN_DIMS)[:, None]
    junk = junk.masked_fill(pad[:, None, :], float("nan"))
    junk = junk.masked_fill(~mask[:, :, None], float("inf"))
    a = model(packed, mask)
    b = model(junk, mask)
    torch.testing.assert_close(a[mask], b[mask])
    assert torch.isfinite(b).all()
    b.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    w_grad = model.in_weight.grad
    assert w_grad is not None
    for m, d in enumerate(IN_DIMS):
        assert (w_grad[m, d:] == 0).all() and (w_grad[m, :d] != 0).any()


def test_hydra_dict_input_and_init() -> None:
    torch.manual_seed(3)
    model = Hydra(IN_DIMS, 3, width=8, hidden=(8,), names=["v1", "v2", "s1", "s2"]).eval()
    xs = [torch.randn(5, d) for d in IN_DIMS]
    torch.testing.assert_close(model(dict(zip(["v1", "v2", "s1", "s2"], xs, strict=True))), model(xs))
    for m, d in enumerate(IN_DIMS):
        w = model.in_weight.detach()[m]
        assert (w[d:] == 0).all()
        assert w[:d].abs().max() <= 1 / np.sqrt(d) and w[:d].abs().max() > 0.3 / np.sqrt(d)


def test_hydra_input_layers_are_one_batched_kernel() -> None:
    # the number of torch calls in a forward must not grow with the number of modalities
    counts = []
    for in_dims in ([5, 9], [5, 9, 3, 7, 11, 4]):
        model = Hydra(in_dims, 4, width=8, hidden=(8, 8)).train()
        x = torch.randn(len(in_dims), 6, max(in_dims))
        mask = torch.ones(len(in_dims), 6, dtype=torch.bool)
        with _CountCalls() as c:
            model(x, mask)
        counts.append(c.calls)
    assert counts[0] == counts[1]
    assert counts[0]["baddbmm"] == 1
    assert counts[0]["linear"] == 3  # two backbone layers + head, each once on the [M*B, W] stack
    assert counts[0]["matmul"] + counts[0]["mm"] + counts[0]["bmm"] == 0


@pytest.mark.parametrize("size", [(8, 8), (13, 29), (40, 9)])
def test_vgg_regressor_small_cfg_shapes(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = VGGRegressor(cfg=(8, "M", 16, 16, "M", 16, "M", 16, "M", 16, "M"), head_hidden=(12,))
    out = model(torch.randn(3, 3, *size))
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    parts = VGGRegressor.split(out)
    assert list(parts) == ["distance", "sin_baz", "cos_baz"]
    torch.testing.assert_close(parts["cos_baz"], out[:, 2])
    out.sum().backward()


def test_vgg_regressor_default_is_vgg16_and_handles_small_inputs() -> None:
    model = VGGRegressor().eval()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 13 and len(pools) == 5
    assert [c.out_channels for c in convs] == [v for v in VGG_CFGS["vgg16"] if v != "M"]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 13
    with torch.no_grad():
        for size in ((8, 8), (9, 17)):
            assert model(torch.randn(2, 3, *size)).shape == (2, 3)
    with pytest.raises(ValueError):
        model(torch.randn(3, 8, 8))
    with pytest.raises(ValueError):
        VGGRegressor(cfg=(8, "X"))


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")],
        ),
    ],
)
def test_library_follows_input_device(device: str) -> None:
    """Everything runs where its inputs live and matches the CPU float64 result."""
    from models.emin import gaussian_emin, seismic_emin, student_teacher_emin
    from models.geo import destination
    from models.metrics import classification_metrics, predictive_variance

    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    preds = torch.randn(4, 10, 3, generator=g, dtype=torch.float64)
    mask = torch.rand(4, 10, generator=g) < 0.7
    preds = torch.where(mask[..., None], preds, torch.nan)
    teacher = torch.tensor([True, False, True, False])
    for fn, args in (
        (gaussian_emin, (preds, mask)),
        (student_teacher_emin, (preds, mask, teacher)),
    ):
        got = fn(*(a.to(dev) for a in args))
        assert got.device.type == dev.type
        torch.testing.assert_close(got.cpu(), fn(*args))
    lat, lon = torch.rand(12, dtype=torch.float64) * 5 + 40, torch.rand(12, dtype=torch.float64) * 5 - 112
    ids = torch.arange(12) // 4
    s = seismic_emin(lat.to(dev), lon.to(dev), ids.to(dev), is_teacher=(torch.arange(12) % 2 == 0).to(dev))
    torch.testing.assert_close(s.cpu(), seismic_emin(lat, lon, ids, is_teacher=torch.arange(12) % 2 == 0))
    la, lo = destination(lat.to(dev), lon.to(dev), lat.to(dev) * 3, lon.to(dev).abs())
    assert la.device.type == dev.type
    ref_la, ref_lo = destination(lat, lon, lat * 3, lon.abs())
    torch.testing.assert_close(la.cpu(), ref_la)
    torch.testing.assert_close(lo.cpu(), ref_lo)
    model = _hydra().eval()
    xs, m = _inputs(6)
    ref = model(xs, m)
    model_d = model.to(dev)
    out = model_d([x.to(dev) for x in xs], m.to(dev))
    torch.testing.assert_close(out.cpu(), ref)
    y = torch.randint(0, 6, (6,))
    assert classification_metrics(out, y.to(dev), m.to(dev)) == classification_metrics(ref, y, m)
    np.testing.assert_allclose(predictive_variance(out, m.to(dev)), predictive_variance(ref, m), rtol=1e-9)
    vgg = VGGRegressor(cfg=(8, "M", 8, "M"), head_hidden=(4,)).to(dev).eval()
    assert vgg(torch.randn(2, 3, 9, 11, device=dev)).device.type == dev.type
