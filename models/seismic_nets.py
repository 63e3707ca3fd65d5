"""Seismic location networks: the VGG-style regressor and one network per sensor type.

:class:`VGGRegressor` (report 4.4) maps ``[B, C, freq, time]`` spectrograms to (distance, sin
BAZ, cos BAZ). :class:`PerSensorRegressor` holds one such network per sensor type (report 4.5:
"triaxial and single channel modalities comprised separate models"), trained jointly; each
trace goes through the network of its sensor type, so the student–teacher EMIN (whose centre
comes from the detached teacher outputs) sends exactly zero gradient to the teacher network.
:func:`build_seismic_model` builds what a config describes; :func:`forward_seismic` calls either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from models.layers import FP32Linear

if TYPE_CHECKING:
    from schemas.training import SeismicTrainConfig

__all__ = [
    "SMALL_VGG",
    "VGG_CFGS",
    "PerSensorRegressor",
    "VGGRegressor",
    "build_seismic_model",
    "forward_seismic",
    "sensor_groups",
]


VGG_CFGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
        *(512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    ),
}
#: A light VGG-style stack for CPU demos (``arch="small"``); the report used VGG16.
SMALL_VGG: tuple[int | str, ...] = (32, "M", 64, "M", 128, "M", 128, "M")


class VGGRegressor(nn.Module):
    """VGG-style CNN on ``(channels, freq, time)`` spectrograms with a multitask head (report 4.4).

    ``cfg`` is a VGG configuration (channel counts, ``"M"`` = 2×2 max-pool;
    default VGG16); every conv is 3×3 → BatchNorm → ReLU. Pools use
    ``ceil_mode`` and an adaptive average pool to ``pool_size`` precedes
    the head, so any input of at least 1×1 (in particular every size
    ≥ 8×8) works. The head is ``[Linear → ReLU → Dropout] × len(head_hidden)
    → Linear(n_outputs)``.

    ``forward`` returns a ``[B, 3]`` tensor whose columns are, in order,
    **(distance, sin BAZ, cos BAZ)**, unconstrained (distance in whatever
    unit the targets use; BAZ via :func:`models.geo.baz_from_sincos`);
    :meth:`split` names them.
    """

    OUTPUTS = ("distance", "sin_baz", "cos_baz")

    def __init__(
        self,
        in_channels: int = 3,
        *,
        cfg: Sequence[int | str] = VGG_CFGS["vgg16"],
        head_hidden: Sequence[int] = (256,),
        dropout: float = 0.5,
        pool_size: tuple[int, int] = (1, 1),
        n_outputs: int = 3,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            elif isinstance(item, int) and item > 0:
                layers += [nn.Conv2d(ch, item, kernel_size=3, padding=1), nn.BatchNorm2d(item), nn.ReLU()]
                ch = item
            else:
                raise ValueError(f"cfg entries must be positive ints or 'M', got {item!r}")
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        head: list[nn.Module] = []
        width = ch * pool_size[0] * pool_size[1]
        for h in head_hidden:
            head += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        head.append(FP32Linear(width, n_outputs))
        self.head = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, freq, time]`` spectrograms → ``[B, 3]`` (distance, sin BAZ, cos BAZ)."""
        if x.dim() != 4:
            raise ValueError(f"expected [B, C, freq, time], got {tuple(x.shape)}")
        return self.head(torch.flatten(self.pool(self.features(x)), 1))

    @classmethod
    def split(cls, out: Tensor) -> dict[str, Tensor]:
        """Name the output columns: ``{"distance": [B], "sin_baz": [B], "cos_baz": [B]}``."""
        return {name: out[:, i] for i, name in enumerate(cls.OUTPUTS)}


class PerSensorRegressor(nn.Module):
    """One regressor per sensor type (``sensors``, e.g. ``["1C", "3C"]``), trained jointly.

    ``forward(x, group)`` sends trace ``i`` through ``nets[group[i]]`` and returns the outputs
    in input order; a sensor type absent from the batch is not run.
    """

    def __init__(self, sensors: Sequence[str], nets: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(sensors) != len(nets) or not sensors:
            raise ValueError("need one network per sensor type")
        self.sensors = [str(s) for s in sensors]
        self.nets = nn.ModuleList(nets)

    def forward(self, x: Tensor, group: Tensor) -> Tensor:
        """``[B, C, F, T]`` and ``group [B]`` (index into ``sensors``) → ``[B, 3]``."""
        outs, order = [], []
        for k, net in enumerate(self.nets):
            sel = torch.nonzero(group == k).squeeze(1)
            if sel.numel():
                outs.append(net(x[sel]).float())
                order.append(sel)
        if not outs:
            return torch.zeros((0, 3), device=x.device)
        idx = torch.cat(order)
        return torch.cat(outs)[torch.argsort(idx)]


def sensor_groups(sensor_type: Sequence[str], sensors: Sequence[str]) -> Tensor:
    """Index of each trace's sensor type in ``sensors`` (``[N]`` int64, CPU)."""
    pos = {s: i for i, s in enumerate(sensors)}
    return torch.tensor([pos[str(s)] for s in sensor_type], dtype=torch.int64)


def _vgg(config: SeismicTrainConfig) -> VGGRegressor:
    cfg = SMALL_VGG if config.arch == "small" else VGG_CFGS[config.arch]
    return VGGRegressor(config.in_channels, cfg=cfg, head_hidden=config.head_hidden, dropout=config.dropout)


def build_seismic_model(config: SeismicTrainConfig, sensors: Sequence[str] | None = None) -> nn.Module:
    """VGG-style regressor on 3- or 5-channel spectrograms (``arch="small"`` or a VGG config).

    ``networks="per-sensor"`` (needs ``sensors``, the sorted sensor types): one regressor per
    sensor type, built in ``sensors`` order from the ambient seed.
    """
    if config.effective_networks == "shared":
        return _vgg(config)
    if not sensors:
        raise ValueError("networks='per-sensor' needs the sensor types")
    return PerSensorRegressor(sensors, [_vgg(config) for _ in sensors])


def forward_seismic(model: nn.Module, x: Tensor, group: Tensor) -> Tensor:
    """Outputs ``[B, 3]`` of a shared or per-sensor model (``group``: sensor index per trace)."""
    out: Tensor = model(x, group) if isinstance(model, PerSensorRegressor) else model(x)
    return out
