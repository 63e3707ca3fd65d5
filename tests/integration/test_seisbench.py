"""SeisBench export of a published seismic dataset, loaded back with seisbench itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from test_publish_support import seismic_dataset
from typer.testing import CliRunner

from flows.cli.datasets import register
from pipeline.errors import ExportError
from pipeline.publishing.codes import strings
from pipeline.publishing.export_seisbench import export_seisbench
from pipeline.publishing.registry import open_dataset
from pipeline.publishing.versions import publish_dataset

pytestmark = pytest.mark.integration
sbd = pytest.importorskip("seisbench.data")


@pytest.mark.parametrize("fmt", ["1.1", "1.0"])
def test_cli_export_loads_in_seisbench(tmp_path: Path, fmt: str) -> None:
    seis = seismic_dataset(fmt=fmt)
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
    assert meta["station_code"].iloc[i] == strings(seis, "station")[7] == "S002"
    assert meta["station_sensor_type"].iloc[i] in ("1C", "3C")
    assert meta["trace_P_arrival_sample"].iloc[i] == 100  # 5 s after the window start at 20 Hz
    split = strings(seis, "split")
    assert len(data.train()) == int(np.sum(split == "train"))
    assert len(data.dev()) == int(np.sum(split == "val")) and len(data.test()) == int(np.sum(split == "test"))
    assert pd.read_csv(tmp_path / "sb" / "metadata.csv")["trace_name"].is_unique


def test_spectrogram_only_store_is_refused_with_the_missing_field(tmp_path: Path) -> None:
    publish_dataset(seismic_dataset().drop_vars("waveform"), name="seis", root=tmp_path)
    with pytest.raises(ExportError, match="'waveform'"):
        export_seisbench(open_dataset("seis", root=tmp_path), out=tmp_path / "sb")
    assert not (tmp_path / "sb" / "metadata.csv").exists()


def test_real_curated_store_exports_waveforms_that_made_the_spectrograms(tmp_path: Path) -> None:
    """End to end: synthetic network -> curation with waveforms kept -> publish -> export -> seisbench."""
    import scipy.signal

    from pipeline.seismic.curate import curate_seismic
    from pipeline.synthetic.seismic_network import generate_seismic_network
    from schemas.seismic import SeismicCurationParams, SeismicInputs

    net = generate_seismic_network(tmp_path / "net", seed=5, n_stations=12, n_events=4)
    params = SeismicCurationParams(keep_waveforms=True, max_horizontal_error_km=None)
    inputs = SeismicInputs.from_glob(net.waveform_glob, net.inventory, net.events, net.picks)
    curate_seismic(inputs, tmp_path / "s.zarr", params)
    from pipeline.publishing.zarr_io import open_store

    store = open_store(tmp_path / "s.zarr").load()
    publish_dataset(store, name="seis", root=tmp_path / "root")
    export_seisbench(open_dataset("seis", root=tmp_path / "root"), out=tmp_path / "sb")
    data = sbd.WaveformDataset(tmp_path / "sb", component_order="ZNE")
    assert len(data) == store.sizes["trace"] > 0
    names = data.metadata["trace_name"].to_numpy()
    for i in (0, len(data) - 1):
        wave = data.get_waveforms(int(np.flatnonzero(names == str(store["trace_id"].values[i]))[0]))
        np.testing.assert_array_equal(wave, store["waveform"].values[i])
        # the exported window is the one the stored spectrogram was computed from (scipy route)
        z = wave[0].astype(np.float64)
        _, _, sxx = scipy.signal.spectrogram(
            z, fs=100.0, window="hann", nperseg=100, noverlap=0, detrend="constant", scaling="density"
        )
        # up to the 45 Hz band-pass corner: above it the power is ~1e-9 of the peak and the float32
        # waveform (vs the float64 window the store was computed from) moves its log10 by ~0.03
        band = slice(0, 46)
        np.testing.assert_allclose(
            np.log10(sxx + 1e-20)[band], store["spectrogram"].values[i, 0][band], atol=2e-3
        )
    # the torch dataset over the same published version yields the store's values
    from torch.utils.data import DataLoader

    from pipeline.publishing.torch_data import SpectrogramDataset, collate_spectrograms

    train = SpectrogramDataset(open_dataset("seis", root=tmp_path / "root"), splits=["train"])
    rows = np.flatnonzero(strings(store, "split") == "train")
    assert len(train) == rows.size > 0
    batch = next(iter(DataLoader(train, batch_size=4, collate_fn=collate_spectrograms)))
    first = int(batch["index"][0])
    np.testing.assert_array_equal(batch["x"][0].numpy(), store["spectrogram"].values[first])
    expected = [store[c].values[first] for c in ("distance_km", "sin_baz", "cos_baz")]
    np.testing.assert_allclose(batch["y"][0].numpy(), expected, rtol=1e-6)
