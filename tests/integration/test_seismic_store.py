"""End-to-end seismic curation on small generated networks and on obspy's bundled real data."""

from __future__ import annotations

import os
import shutil
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.signal
from store_digests import store_digest

from pipeline.errors import InputError
from pipeline.publishing.codes import strings
from pipeline.publishing.contract import validate_seismic_store
from pipeline.publishing.zarr_io import open_store
from pipeline.seismic.batch import windowed_samples
from pipeline.seismic.curate import curate_seismic
from pipeline.seismic.layout import encoding, skeleton, write_skeleton
from pipeline.seismic.store import SeismicStoreWriter
from pipeline.seismic.traveltimes import travel_time_table
from pipeline.seismic.windows import extract_segments, load_metadata
from pipeline.synthetic.seismic_network import SeismicNetwork, generate_seismic_network
from schemas.seismic import SeismicCurationParams, SeismicInputs

pytestmark = pytest.mark.integration

PARAMS = SeismicCurationParams(max_horizontal_error_km=None)


def inputs(net: SeismicNetwork, files: list[Path] | None = None, **kw: Path) -> SeismicInputs:
    return SeismicInputs(
        waveforms=files if files is not None else list(net.waveform_files),
        inventory=kw.get("inventory", net.inventory),
        events=kw.get("events", net.events),
        picks=kw.get("picks", net.picks),
    )


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> SeismicNetwork:
    return generate_seismic_network(tmp_path_factory.mktemp("net"), seed=3, n_stations=20, n_events=10)


@pytest.fixture(scope="module")
def store(net: SeismicNetwork, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("store") / "seismic.zarr"
    curate_seismic(inputs(net), out, PARAMS)
    return out


def test_generator_is_deterministic_and_documented(net: SeismicNetwork, tmp_path: Path) -> None:
    again = generate_seismic_network(tmp_path, seed=3, n_stations=20, n_events=10)
    for a, b in zip(net.waveform_files, again.waveform_files, strict=True):
        assert a.read_bytes() == b.read_bytes()
    for a, b in ((net.inventory, again.inventory), (net.events, again.events), (net.picks, again.picks)):
        assert a.read_bytes() == b.read_bytes(), a.name  # no wall clock, no random resource ids
    assert "NOT REAL DATA" in net.readme.read_text()
    import obspy

    inv = obspy.read_inventory(str(net.inventory))
    n3 = sum(len(sta.channels) == 3 for sta in inv[0])
    assert 0 < n3 < len(inv[0])
    cat = obspy.read_events(str(net.events))
    assert cat[0].origins[0].origin_uncertainty.horizontal_uncertainty > 0


def test_store_satisfies_contract_and_accounts_for_every_observation(
    net: SeismicNetwork, store: Path
) -> None:
    assert validate_seismic_store(store) == []
    ds = open_store(store)
    rej = open_store(store, group="rejects")
    truth = pd.read_csv(net.truth, dtype=str)
    expected = {f"{r.event_id}.{r.network}.{r.station}..{'HH' if r.sensor_type == '3C' else 'EH'}"
                for r in truth.itertuples()}  # fmt: skip
    stored = set(strings(ds, "trace_id").tolist())
    rejected = set(strings(rej, "trace_id").tolist())
    assert expected <= stored | rejected  # never a silent drop
    assert stored <= expected
    assert ds.sizes["channel"] == 3 and ds.sizes["freq"] == 51 and ds.sizes["time"] == 120
    assert ds.attrs["counts"] == recount(ds)


def recount(ds: Any) -> dict[str, Any]:
    """The store's ``counts`` attribute recomputed from its stored columns (rejects from its table)."""
    st, sp = strings(ds, "sensor_type").tolist(), strings(ds, "split").tolist()
    reasons = strings(open_store(ds.encoding["source"], group="rejects"), "reason").tolist()
    edges = [0, 25, 50, 75, 100, 150, 200, 300, 450, 10_000]
    return {
        "traces": ds.sizes["trace"],
        "events": len(set(strings(ds, "event_id").tolist())),
        "per_sensor_type": dict(Counter(st)),
        "per_split": dict(Counter(sp)),
        "per_sensor_type_split": {f"{a}/{b}": n for (a, b), n in Counter(zip(st, sp, strict=True)).items()},
        "rejects": len(reasons),
        "rejects_per_reason": dict(Counter(reasons)),
        "distance_histogram_km": {
            "edges": edges,
            "counts": np.histogram(ds["distance_km"].values, bins=edges)[0].tolist(),
        },
    }


def test_counts_that_disagree_with_the_store_are_a_contract_problem(store: Path, tmp_path: Path) -> None:
    import zarr

    bad = tmp_path / "bad.zarr"
    shutil.copytree(store, bad)
    group = zarr.open_group(str(bad), mode="r+")
    counts = dict(group.attrs["counts"])
    group.attrs["counts"] = {**counts, "traces": counts["traces"] + 1, "per_split": {"train": 1}}
    zarr.consolidate_metadata(str(bad))
    problems = validate_seismic_store(bad)
    assert any("attrs.counts.traces" in p for p in problems)
    assert any("attrs.counts.per_split" in p for p in problems)


def test_an_event_in_two_splits_is_a_contract_problem(store: Path, tmp_path: Path) -> None:
    import zarr

    bad = tmp_path / "bad.zarr"
    shutil.copytree(store, bad)
    events = strings(open_store(bad), "event_id")
    shared = next(e for e in sorted(set(events.tolist())) if (events == e).sum() >= 2)
    split = zarr.open_array(str(bad), path="split", mode="r+")
    codes = np.asarray(split[...])
    first = int(np.flatnonzero(events == shared)[0])
    codes[first] = (codes[first] + 1) % 3  # one trace of the event moves to another split
    split[...] = codes
    problems = validate_seismic_store(bad)
    assert f"events in more than one split: ['{shared}']" in problems


def test_skeleton_files_equal_xarrays_own_directory_write(tmp_path: Path) -> None:
    params = SeismicCurationParams(keep_waveforms=True, cross_spectra=True)
    write_skeleton(tmp_path / "mine.zarr", params)
    ds = skeleton(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(tmp_path / "xr.zarr", mode="w", zarr_format=3, consolidated=False,
                   encoding=encoding(ds, params.traces_per_chunk))  # fmt: skip
    assert store_digest(tmp_path / "mine.zarr") == store_digest(tmp_path / "xr.zarr")
    assert len(list((tmp_path / "xr.zarr").rglob("zarr.json"))) > 20


def test_store_labels_match_gps2dist_azimuth(store: Path) -> None:
    from obspy.geodetics import gps2dist_azimuth
    from pyproj import Geod

    ds = open_store(store)
    slat, slon = ds["station_latitude"].values, ds["station_longitude"].values
    elat, elon = ds["event_latitude"].values, ds["event_longitude"].values
    dist, baz = ds["distance_km"].values, ds["back_azimuth_deg"].values
    for i in range(ds.sizes["trace"]):
        d, az, _ = gps2dist_azimuth(slat[i], slon[i], elat[i], elon[i])
        assert dist[i] == pytest.approx(d / 1000, abs=1e-6) and baz[i] == pytest.approx(az, abs=1e-6)
    lon2, lat2, _ = Geod(ellps="WGS84").fwd(slon, slat, baz, dist * 1000)
    _, _, miss = Geod(ellps="WGS84").inv(lon2, lat2, elon, elat)
    assert np.max(miss) < 1.0


def test_vertical_only_traces_have_exactly_zero_NE(store: Path) -> None:
    ds = open_store(store)
    st = strings(ds, "sensor_type")
    assert (st == "1C").any() and (st == "3C").any()
    spec = ds["spectrogram"].values
    assert np.all(spec[st == "1C"][:, 1:] == 0.0)
    assert np.all(spec[st == "3C"][:, 1:] != 0.0)


def test_no_event_in_two_splits(store: Path) -> None:
    ds = open_store(store)
    df = pd.DataFrame({"e": strings(ds, "event_id"), "s": strings(ds, "split")})
    assert (df.groupby("e")["s"].nunique() == 1).all()


def test_store_spectrogram_equals_scipy_on_the_windowed_samples(net: SeismicNetwork, store: Path) -> None:
    """Tolerance 1e-3 in log10 power (float32 store)."""
    meta = load_metadata(net.inventory, net.events, net.picks, travel_time_table("iasp91", 5.0))
    segs, _ = extract_segments(net.waveform_files[0], meta, PARAMS)
    window, valid = windowed_samples(segs, PARAMS)
    _, _, ref = scipy.signal.spectrogram(window.astype(np.float64), fs=100.0, window="hann", nperseg=100,
                                         noverlap=0, detrend="constant", scaling="density", mode="psd")  # fmt: skip
    ref = np.log10(ref + PARAMS.log_eps)
    ds = open_store(store)
    ids = strings(ds, "trace_id").tolist()
    for i, s in enumerate(segs):
        got = ds["spectrogram"].values[ids.index(s.trace_id)]
        np.testing.assert_allclose(got[valid[i]], ref[i][valid[i]], atol=1e-3, rtol=0)


def test_spectrogram_shows_the_p_arrival(store: Path) -> None:
    """Sanity of the synthesis: power after P exceeds pre-P noise on average."""
    ds = open_store(store)
    z = ds["spectrogram"].values[:, 0]
    t = ds["time"].values
    pre = z[:, 2:20, t < -1].mean()
    post = z[:, 2:20, (t > 0) & (t < 5)].mean()
    assert post > pre + 0.3  # > 2x the pre-P power


def test_reingest_is_a_noop(net: SeismicNetwork, store: Path) -> None:
    before = store_digest(store)
    summary = curate_seismic(inputs(net), store, PARAMS)
    assert summary.published is False and summary.n_added == 0
    assert store_digest(store) == before


def test_append_adds_only_new_traces_and_equals_one_shot(
    net: SeismicNetwork, store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "a.zarr"
    first = curate_seismic(inputs(net, net.waveform_files[:4]), out, PARAMS)
    # keep an extra hard link of every file: an append must never modify a file in place
    snap = tmp_path / "snap"
    for p in out.rglob("*"):
        if p.is_file():
            (snap / p.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
            os.link(p, snap / p.relative_to(out))
    digest = store_digest(out)
    second = curate_seismic(inputs(net), out, PARAMS)
    assert store_digest(snap) == digest
    one_shot = open_store(store)
    ds = open_store(out)
    assert second.n_added == one_shot.sizes["trace"] - first.n_added
    assert second.n_already_present == first.n_added
    ids = strings(ds, "trace_id").tolist()
    ref_ids = strings(one_shot, "trace_id").tolist()
    assert sorted(ids) == sorted(ref_ids)
    order = [ref_ids.index(t) for t in ids]
    np.testing.assert_array_equal(ds["spectrogram"].values, one_shot["spectrogram"].values[order])
    np.testing.assert_array_equal(strings(ds, "split"), strings(one_shot, "split")[order])
    assert validate_seismic_store(out) == []
    assert ds.attrs["counts"] == recount(ds) == one_shot.attrs["counts"]


@pytest.mark.parametrize("stage", ["append", "rejects", "swap"])
def test_crash_mid_append_keeps_old_store_and_rerun_completes(
    net: SeismicNetwork, store: Path, tmp_path: Path, stage: str
) -> None:
    out = tmp_path / "c.zarr"
    curate_seismic(inputs(net, net.waveform_files[:3]), out, PARAMS)
    before = store_digest(out)
    calls = {"n": 0}

    def crash(where: str, n: int) -> None:
        calls["n"] += 1
        if where == stage and (stage != "append" or calls["n"] >= 2):
            raise RuntimeError(f"simulated crash at {where}")

    with pytest.raises(RuntimeError, match="simulated crash"):
        curate_seismic(inputs(net), out, PARAMS, unit_mb=1e-6, hook=crash)
    assert store_digest(out) == before
    assert validate_seismic_store(out) == []
    assert not list(tmp_path.glob(".c.zarr.*"))
    curate_seismic(inputs(net), out, PARAMS)
    assert sorted(strings(open_store(out), "trace_id")) == sorted(strings(open_store(store), "trace_id"))


def test_crash_between_renames_is_recovered(net: SeismicNetwork, tmp_path: Path) -> None:
    out = tmp_path / "r.zarr"
    curate_seismic(inputs(net, net.waveform_files[:2]), out, PARAMS)
    os.rename(out, tmp_path / ".r.zarr.old-deadbeef0000")  # as if killed after the first rename
    SeismicStoreWriter(out, PARAMS)
    assert validate_seismic_store(out) == []


def test_cross_spectra_store_keeps_polarity_and_equals_scipy(
    net: SeismicNetwork, store: Path, tmp_path: Path
) -> None:
    """``cross_spectra``: the spectrogram is unchanged, the pair equals scipy's complex STFT of
    the windowed samples, and atan2(ZE, ZN) of the P frames is the event→station azimuth
    (back azimuth + 180°), which log power alone cannot tell from its mirror images."""
    params = PARAMS.model_copy(update={"cross_spectra": True})
    out = tmp_path / "polarity.zarr"
    curate_seismic(inputs(net), out, params)
    assert validate_seismic_store(out) == []
    ds, plain = open_store(out), open_store(store)
    np.testing.assert_array_equal(ds["spectrogram"].values, plain["spectrogram"].values)
    ids = strings(ds, "trace_id").tolist()
    meta = load_metadata(net.inventory, net.events, net.picks, travel_time_table("iasp91", 5.0))
    segs, _ = extract_segments(net.waveform_files[0], meta, params)
    window, valid = windowed_samples(segs, params)
    _, _, spec = scipy.signal.spectrogram(window, fs=100.0, window="hann", nperseg=100, noverlap=0,
                                          detrend="constant", mode="complex")  # fmt: skip
    total = (np.abs(spec) ** 2).sum(axis=1)
    ref = np.stack([(spec[:, 0] * np.conj(spec[:, h])).real / total for h in (1, 2)], axis=1)
    for i, seg in enumerate(segs):
        got = ds["cross_spectrum"].values[ids.index(seg.trace_id)]
        np.testing.assert_allclose(got, ref[i] if valid[i, 1] else 0.0, atol=1e-5, rtol=0)
    three = strings(ds, "sensor_type") == "3C"
    t = ds["time"].values
    p_frames = ds["cross_spectrum"].values[three][:, :, 2:20, (t > 0) & (t < 3)].sum(axis=(2, 3))
    azimuth = np.degrees(np.arctan2(p_frames[:, 1], p_frames[:, 0]))
    expected = ds["back_azimuth_deg"].values[three] + 180.0
    error = np.abs((azimuth - expected + 180.0) % 360.0 - 180.0)
    assert three.sum() >= 10 and np.median(error) < 20.0
    with pytest.raises(InputError, match="cross_spectra"):  # an append must keep the representation
        curate_seismic(inputs(net), out, PARAMS)


def test_polarity_inputs_need_a_store_with_cross_spectra(store: Path) -> None:
    from models.data import load_seismic
    from pipeline.errors import TrainingConfigError

    with pytest.raises(TrainingConfigError, match="--cross-spectra"):
        load_seismic(store, polarity=True)


def test_sparse_network_records_only_within_max_distance(tmp_path: Path) -> None:
    """8 stations, 3 events: the nearest stations of an event may lie beyond 450 km; they are
    not forced to record it (that used to fail on the travel-time table), and an event no
    station sees gets no file."""
    net = generate_seismic_network(tmp_path / "net", seed=6, n_stations=8, n_events=3)
    truth = pd.read_csv(net.truth)
    assert len(net.waveform_files) < 3 and truth.distance_km.max() <= 450.0
    summary = curate_seismic(inputs(net), tmp_path / "s.zarr", PARAMS)
    assert summary.n_added == len(truth)


def test_append_with_different_window_is_refused(net: SeismicNetwork, store: Path) -> None:
    with pytest.raises(InputError, match="window_s"):
        curate_seismic(inputs(net), store, SeismicCurationParams(max_horizontal_error_km=None, window_s=60.0))


def test_horizontal_error_filter_records_rejects(net: SeismicNetwork, tmp_path: Path) -> None:
    out = tmp_path / "h.zarr"
    curate_seismic(inputs(net), out, SeismicCurationParams(max_horizontal_error_km=1.0))
    ds = open_store(out)
    assert np.all(ds["event_horizontal_error_km"].values < 1.0)
    rej = open_store(out, group="rejects")
    reasons = strings(rej, "reason")
    events = pd.read_csv(net.truth)
    n_big = 0
    import obspy

    for ev in obspy.read_events(str(net.events)):
        if ev.origins[0].origin_uncertainty.horizontal_uncertainty >= 1000:
            n_big += int((events["event_id"] == str(ev.resource_id).split("/")[-1]).sum())
    assert n_big > 0 and int((reasons == "horizontal_error_too_large").sum()) == n_big


# ---------------------------------------------------------------------------------------------
# Bad input: each becomes a recorded reject (or a clear error), never a silent drop
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad(net: SeismicNetwork, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    import obspy
    from obspy.core.event import Catalog, Event

    d = tmp_path_factory.mktemp("bad")
    files = [d / f.name for f in net.waveform_files]
    for f, g in zip(net.waveform_files, files, strict=True):
        shutil.copy(f, g)
    (d / "corrupt.mseed").write_bytes(b"this is not miniSEED" * 100)
    files.append(d / "corrupt.mseed")
    cases: dict[str, str] = {}

    def stream(i: int) -> obspy.Stream:
        return obspy.read(str(files[i]))

    # station missing from inventory; sampling-rate mismatch; too short; NaN; gap; clipped
    st = stream(0)
    three = sorted({tr.stats.station for tr in st if tr.stats.channel.startswith("HH")})
    one = sorted({tr.stats.station for tr in st if tr.stats.channel == "EHZ"})
    ev0 = files[0].stem
    tr = st.select(station=one[0])[0].copy()
    tr.stats.station = "NOPE"
    obspy.Stream([tr]).write(str(d / "missing_station.mseed"), format="MSEED")
    cases["missing_station_metadata"] = "SY.NOPE..EHZ"
    files.append(d / "missing_station.mseed")
    # rewrite file 0 with the other defects
    st0 = stream(0)
    sub = st0.select(station=three[0])
    sub.select(channel="HHZ")[0].decimate(2, no_filter=True)
    cases["sampling_rate_mismatch"] = f"SY.{three[0]}..HHZ"
    tr = st0.select(station=one[0])[0]
    tr.trim(tr.stats.starttime, tr.stats.starttime + 60)
    cases["too_short"] = f"{ev0}.SY.{one[0]}..EH"
    for trx in st0:
        if trx.data.dtype != np.float64:
            trx.data = trx.data.astype(np.float64)
    st0.write(str(files[0]), format="MSEED", encoding="FLOAT64")
    st1 = stream(1)
    one1 = sorted({t.stats.station for t in st1 if t.stats.channel == "EHZ"})
    if one1:
        tr = st1.select(station=one1[0])[0]
        a = tr.copy().trim(tr.stats.starttime, tr.stats.starttime + 50)
        b = tr.copy().trim(tr.stats.starttime + 52, tr.stats.endtime)
        st1.remove(tr)
        st1 += obspy.Stream([a, b])
        cases["gap"] = f"{files[1].stem}.SY.{one1[0]}..EH"
    st1.write(str(files[1]), format="MSEED")
    st2 = stream(2)
    tr = st2.select(channel="*Z")[0]
    tr.data[4000] = 8_388_607
    cases["clipped"] = f"{files[2].stem}.SY.{tr.stats.station}..{tr.stats.channel[:2]}"
    st2.write(str(files[2]), format="MSEED")
    st5 = stream(5)
    tr = st5[0]
    tr.data = tr.data.astype(np.float64)
    tr.data[5000] = np.nan
    for trx in st5:
        trx.data = trx.data.astype(np.float64)
    st5.write(str(files[5]), format="MSEED", encoding="FLOAT64")
    cases["nan_samples"] = f"{files[5].stem}.SY.{tr.stats.station}..{tr.stats.channel[:2]}"
    # duplicate file: every trace of it is a duplicate
    shutil.copy(files[3], d / "zz_duplicate.mseed")
    files.append(d / "zz_duplicate.mseed")
    st3 = stream(3)
    cases["duplicate_trace_id"] = f"{files[3].stem}.SY.{st3[0].stats.station}..{st3[0].stats.channel[:2]}"
    # channel without orientation: drop the azimuth of one horizontal of a 3C station
    inv = obspy.read_inventory(str(net.inventory))
    st4 = stream(4)
    three4 = sorted({t.stats.station for t in st4 if t.stats.channel.startswith("HH")})
    target = three4[0] if three4 else three[1]
    for cha in inv.select(station=target)[0][0]:
        if cha.code[-1] != "Z":
            cha.azimuth = None
            break
    inv.write(str(d / "stations.xml"), format="STATIONXML")
    cases["missing_orientation"] = f"SY.{target}..HH"
    # event without origin
    cat = obspy.read_events(str(net.events))
    cat = Catalog(events=[*cat.events, Event(resource_id="smi:local/emin-synth/event/no_origin_event")])
    cat.write(str(d / "events.xml"), format="QUAKEML")
    cases["no_origin"] = "event:no_origin_event"
    out = d / "bad.zarr"
    summary = curate_seismic(
        SeismicInputs(
            waveforms=files, inventory=d / "stations.xml", events=d / "events.xml", picks=net.picks
        ),
        out,
        PARAMS,
    )
    return {"out": out, "cases": cases, "summary": summary}


CASES = [
    "unreadable_file",
    "missing_station_metadata",
    "missing_orientation",
    "sampling_rate_mismatch",
    "too_short",
    "no_origin",
    "duplicate_trace_id",
    "nan_samples",
    "gap",
    "clipped",
]


@pytest.mark.parametrize("reason", CASES)
def test_bad_input_is_a_recorded_reject(bad: dict[str, object], reason: str) -> None:
    out = bad["out"]
    assert isinstance(out, Path)
    assert validate_seismic_store(out) == []  # never a half-written store
    rej = open_store(out, group="rejects")
    df = pd.DataFrame({c: strings(rej, c) for c in ("trace_id", "reason", "detail", "source_file")})
    hits = df[df["reason"] == reason]
    assert len(hits) > 0, f"no {reason} reject; reasons: {sorted(set(df['reason']))}"
    cases = bad["cases"]
    assert isinstance(cases, dict)
    if reason == "unreadable_file":
        assert "file:corrupt.mseed" in set(hits["trace_id"])
    else:
        want = cases[reason]
        assert any(t.startswith(want) or want in t for t in hits["trace_id"]), (want, hits)
    stored = set(strings(open_store(out), "trace_id").tolist())
    assert not set(hits["trace_id"]) & stored or reason == "duplicate_trace_id"


def test_gap_fill_policy_keeps_and_records_the_trace(
    net: SeismicNetwork, bad: dict[str, object], tmp_path: Path
) -> None:
    cases = bad["cases"]
    assert isinstance(cases, dict)
    out = tmp_path / "fill.zarr"
    src = Path(str(bad["out"])).parent
    gap_file = src / net.waveform_files[1].name
    curate_seismic(
        SeismicInputs(waveforms=[gap_file], inventory=net.inventory, events=net.events),
        out,
        SeismicCurationParams(max_horizontal_error_km=None, gap_policy="fill"),
    )
    ds = open_store(out)
    ids = strings(ds, "trace_id").tolist()
    assert (
        ds["n_gap_samples"].values[ids.index(cases["gap"])] == 199
    )  # trimmed at +50 s (inclusive) and +52 s


def test_missing_inventory_file_is_a_clear_error(net: SeismicNetwork, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="inventory not found"):
        curate_seismic(inputs(net, inventory=tmp_path / "nope.xml"), tmp_path / "x.zarr", PARAMS)
    assert not (tmp_path / "x.zarr").exists()


# ---------------------------------------------------------------------------------------------
# Real recording: obspy's bundled BW.RJOB 3C example with its inventory
# ---------------------------------------------------------------------------------------------


def test_real_rjob_recording_against_scipy(tmp_path: Path) -> None:
    """obspy.read() is a real 30 s, 100 Hz BW.RJOB EHZ/EHN/EHE recording (2009-08-24 00:20:03).

    Its catalog event is not bundled, so we construct one at a plausible location (~50 km
    south-west of RJOB, 10 km deep) and give a P pick at the visible onset (00:20:07.0); the
    bundled QuakeML example events are added to the catalog for format coverage (they match
    no waveform and are recorded as no_matching_event-free metadata). The inventory's channel
    rate is 200 Hz while the data is 100 Hz (a real metadata inconsistency): kept by default.
    """
    import obspy
    from obspy import UTCDateTime
    from obspy.core.event import Event, Magnitude, Origin

    st = obspy.read()
    st.write(str(tmp_path / "rjob.mseed"), format="MSEED")
    inv = obspy.read_inventory()
    inv.write(str(tmp_path / "inv.xml"), format="STATIONXML")
    pick = UTCDateTime("2009-08-24T00:20:07.0")
    ev_lat, ev_lon, depth = 47.40, 12.30, 10.0
    cat = obspy.read_events()
    cat.events.append(
        Event(
            resource_id="smi:local/test/rjob_event",
            origins=[Origin(time=pick - 8.0, latitude=ev_lat, longitude=ev_lon, depth=depth * 1000)],
            magnitudes=[Magnitude(mag=2.5)],
        )
    )
    cat.write(str(tmp_path / "events.xml"), format="QUAKEML")
    pd.DataFrame(
        [{"event_id": "rjob_event", "network": "BW", "station": "RJOB", "phase": "P", "time": str(pick)}]
    ).to_csv(tmp_path / "picks.csv", index=False)
    params = SeismicCurationParams(pre_p_s=2.0, window_s=20.0, margin_s=2.0, max_horizontal_error_km=None)
    out = tmp_path / "rjob.zarr"
    curate_seismic(
        SeismicInputs(waveforms=[tmp_path / "rjob.mseed"], inventory=tmp_path / "inv.xml",
                      events=tmp_path / "events.xml", picks=tmp_path / "picks.csv"),
        out, params,
    )  # fmt: skip
    assert validate_seismic_store(out) == []
    ds = open_store(out)
    assert ds.sizes["trace"] == 1
    assert strings(ds, "sensor_type")[0] == "3C" and strings(ds, "p_source")[0] == "pick"
    # independent route: obspy slicing + scipy filtering/spectrogram on the raw samples
    w0 = pick - params.pre_p_s - params.margin_s
    n = round((params.window_s + 2 * params.margin_s) * 100)
    x = np.stack(
        [st.select(component=c)[0].slice(w0, w0 + n / 100).data[:n].astype(np.float64) for c in "ZNE"]
    )
    x = scipy.signal.detrend(x, axis=-1, type="linear")
    m = int(n * params.taper_fraction)
    ramp = 0.5 * (1 - np.cos(np.pi * np.arange(m) / m))
    x[:, :m] *= ramp
    x[:, n - m :] *= ramp[::-1]
    sos = scipy.signal.butter(4, [1.0, 45.0], btype="bandpass", fs=100.0, output="sos")
    x = scipy.signal.sosfiltfilt(sos, x, axis=-1)[:, 200 : 200 + 2000]
    _, _, ref = scipy.signal.spectrogram(x, fs=100.0, window="hann", nperseg=100, noverlap=0)
    np.testing.assert_allclose(ds["spectrogram"].values[0], np.log10(ref + 1e-20), atol=1e-3, rtol=0)
    from obspy.geodetics import gps2dist_azimuth

    d, baz, _ = gps2dist_azimuth(47.737167, 12.795714, ev_lat, ev_lon)
    assert float(ds["distance_km"].values[0]) == pytest.approx(d / 1000, abs=0.01)
    assert float(ds["back_azimuth_deg"].values[0]) == pytest.approx(baz, abs=1e-6)
    assert 180 < baz < 270  # event lies to the south-west of the station


@pytest.mark.parametrize("kind", ["inventory", "events", "picks"])
def test_unreadable_metadata_file_is_an_input_error_naming_it(tmp_path: Path, kind: str) -> None:
    from pipeline.io.waveforms import load_catalog, load_inventory, load_picks

    bad = tmp_path / f"{kind}.xml"
    bad.write_text("<not quakeml or stationxml")
    read = {
        "inventory": lambda: load_inventory(bad),
        "events": lambda: load_catalog(bad),
        "picks": lambda: load_picks(bad, pd.DataFrame()),
    }[kind]
    with pytest.raises(InputError, match=rf"cannot read .*{kind}\.xml(.|\n)*fix:"):
        read()
