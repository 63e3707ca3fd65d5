"""SeisBench export of a published seismic dataset, loaded back with seisbench itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from test_publish_support import seismic_dataset
from typer.testing import CliRunner

from flows.cli_datasets import register
from pipeline.export_seisbench import ExportError, export_seisbench
from pipeline.publish import publish_dataset
from pipeline.registry import open_dataset

pytestmark = pytest.mark.integration
sbd = pytest.importorskip("seisbench.data")


def test_cli_export_loads_in_seisbench(tmp_path: Path) -> None:
    seis = seismic_dataset()
    publish_dataset(seis, name="seis", root=tmp_path / "root")
    runner = CliRunner()
    app = typer.Typer()
    register(app)
    res = runner.invoke(
        app, ["export", "seisbench", "seis", "--out", str(tmp_path / "sb"), "--root", str(tmp_path / "root")]
    )
    assert res.exit_code == 0, res.output
    data = sbd.WaveformDataset(tmp_path / "sb", component_order="ZNE")
    assert len(data) == seis.sizes["trace"]
    meta = data.metadata
    assert data.sampling_rate is None or data.sampling_rate == 20.0
    assert (meta["trace_sampling_rate_hz"] == 20.0).all()
    for col in ("trace_name", "split", "source_latitude_deg", "path_back_azimuth_deg", "station_code",
                "path_ep_distance_km", "source_origin_time", "trace_P_arrival_sample"):  # fmt: skip
        assert col in meta.columns, col
    i = int(np.flatnonzero(meta["trace_name"].to_numpy() == str(seis["trace_id"].values[7]))[0])
    np.testing.assert_array_equal(data.get_waveforms(i), seis["waveform"].values[7])
    assert meta["path_back_azimuth_deg"].iloc[i] == pytest.approx(seis["back_azimuth_deg"].values[7])
    assert meta["station_code"].iloc[i] == str(seis["station"].values[7])
    assert meta["trace_P_arrival_sample"].iloc[i] == 100  # 5 s after the window start at 20 Hz
    split = seis["split"].values.astype(str)
    assert len(data.train()) == int(np.sum(split == "train"))
    assert len(data.dev()) == int(np.sum(split == "val")) and len(data.test()) == int(np.sum(split == "test"))
    assert pd.read_csv(tmp_path / "sb" / "metadata.csv")["trace_name"].is_unique


def test_spectrogram_only_store_is_refused_with_the_missing_field(tmp_path: Path) -> None:
    publish_dataset(seismic_dataset().drop_vars("waveform"), name="seis", root=tmp_path)
    with pytest.raises(ExportError, match="'waveform'"):
        export_seisbench(open_dataset("seis", root=tmp_path), out=tmp_path / "sb")
    assert not (tmp_path / "sb" / "metadata.csv").exists()
