"""Unit tests of the seismic computations, each checked against an independent route."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from pipeline.seismic.labels import event_split, station_event_labels
from pipeline.seismic.signal import (
    batched_cross_spectrum,
    batched_log_spectrogram,
    detrend_linear,
    preprocess_batch,
    rotate_to_zne,
)
from pipeline.seismic.traveltimes import travel_time_table


def test_batched_spectrogram_equals_scipy() -> None:
    """Tolerance: 1e-4 in log10 power (float32 output vs scipy float64)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3, 12_000)) * 100 + np.linspace(0, 50, 12_000)
    freq, time, ours = batched_log_spectrogram(x, 100.0, nperseg=100, eps=1e-20)
    f_ref, t_ref, s_ref = scipy.signal.spectrogram(
        x.astype(np.float64),
        fs=100.0,
        window="hann",
        nperseg=100,
        noverlap=0,
        detrend="constant",
        scaling="density",
        mode="psd",
        axis=-1,
    )
    ref = np.log10(s_ref + 1e-20)
    assert ours.shape == ref.shape == (7, 3, 51, 120)
    np.testing.assert_allclose(freq, f_ref)
    np.testing.assert_allclose(time, t_ref)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    assert ours.dtype == np.float32


def test_cross_spectrum_equals_scipy_complex_spectrogram() -> None:
    """Re(Z·H*) / total power per frame, against scipy's complex STFT of each channel."""
    rng = np.random.default_rng(3)
    fs, nperseg = 50.0, 50
    x = rng.standard_normal((4, 3, 6 * nperseg + 7))
    x[3, 1:] = 0.0  # a vertical-only trace: N/E exactly zero
    got = batched_cross_spectrum(x, nperseg=nperseg)
    kw = dict(fs=fs, window="hann", nperseg=nperseg, noverlap=0, detrend="constant", mode="complex")
    _, _, spec = scipy.signal.spectrogram(x, **kw)  # [4, 3, freq, frames]
    total = (np.abs(spec) ** 2).sum(axis=1)
    ref = np.stack([(spec[:, 0] * np.conj(spec[:, h])).real for h in (1, 2)], axis=1)
    ref = np.divide(ref, total[:, None], out=np.zeros_like(ref), where=total[:, None] > 0)
    assert got.shape == ref.shape == (4, 2, nperseg // 2 + 1, 6)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert np.all(np.abs(got) <= 0.5 + 1e-6)
    assert np.all(got[3] == 0.0)


def test_cross_spectrum_keeps_p_polarity_direction() -> None:
    """P motion along (cos i, sin i cos az, sin i sin az): the (ZN, ZE) pair points along az for
    either source polarity, which log power (a function of |N|, |E|) cannot tell from -az."""
    rng = np.random.default_rng(4)
    nperseg = 100
    pulse = rng.standard_normal(4 * nperseg)
    az = np.radians(np.array([30.0, 150.0, 210.0, 330.0]))
    angles = []
    for pol in (1.0, -1.0):
        zne = pol * np.stack(
            [
                0.8 * pulse[None] * np.ones((4, 1)),
                0.6 * np.cos(az)[:, None] * pulse,
                0.6 * np.sin(az)[:, None] * pulse,
            ],
            axis=1,
        )
        cross = batched_cross_spectrum(zne, nperseg=nperseg).sum(axis=(2, 3))  # [4, 2]
        angles.append(np.degrees(np.arctan2(cross[:, 1], cross[:, 0])) % 360)
    np.testing.assert_allclose(angles[0], [30, 150, 210, 330], atol=1e-6)
    np.testing.assert_allclose(angles[1], angles[0], atol=1e-6)


def test_rotation_matches_obspy_rotate_with_inventory() -> None:
    from obspy import Stream, Trace, UTCDateTime
    from obspy.core.inventory import Channel, Inventory, Network, Station

    rng = np.random.default_rng(1)
    az1 = 37.0
    chans = [("HHZ", 0.0, -90.0), ("HH1", az1, 0.0), ("HH2", az1 + 90.0, 0.0)]
    inv = Inventory(
        networks=[
            Network(
                code="XX",
                stations=[
                    Station(
                        code="A",
                        latitude=40.0,
                        longitude=-111.0,
                        elevation=0.0,
                        channels=[
                            Channel(code=c, location_code="", latitude=40.0, longitude=-111.0, elevation=0.0,
                                    depth=0.0, azimuth=a, dip=d, sample_rate=100.0)
                            for c, a, d in chans
                        ],
                    )
                ],
            )
        ],
        source="test",
    )  # fmt: skip
    data = rng.standard_normal((3, 500))
    st = Stream()
    for (code, _, _), x in zip(chans, data, strict=True):
        tr = Trace(data=x.copy())
        tr.stats.network, tr.stats.station, tr.stats.channel = "XX", "A", code
        tr.stats.sampling_rate = 100.0
        tr.stats.starttime = UTCDateTime(2024, 1, 1)
        st.append(tr)
    st.rotate("->ZNE", inventory=inv)
    ref = np.stack([st.select(component=c)[0].data for c in "ZNE"])
    ours = rotate_to_zne(
        data[None], np.array([[a for _, a, _ in chans]]), np.array([[d for _, _, d in chans]])
    )[0]
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_labels_agree_with_gps2dist_and_destination_point() -> None:
    from obspy.geodetics import gps2dist_azimuth
    from pyproj import Geod

    rng = np.random.default_rng(2)
    n = 50
    sta_lat, sta_lon = rng.uniform(35, 46, n), rng.uniform(-117, -107, n)
    ev_lat, ev_lon = rng.uniform(35, 46, n), rng.uniform(-117, -107, n)
    lab = station_event_labels(sta_lat, sta_lon, ev_lat, ev_lon)
    for i in range(n):
        d, az, _ = gps2dist_azimuth(sta_lat[i], sta_lon[i], ev_lat[i], ev_lon[i])
        assert lab["distance_km"][i] == pytest.approx(d / 1000, abs=1e-9)
        assert lab["back_azimuth_deg"][i] == pytest.approx(az % 360, abs=1e-9)
    lon2, lat2, _ = Geod(ellps="WGS84").fwd(
        sta_lon, sta_lat, lab["back_azimuth_deg"], lab["distance_km"] * 1000
    )
    _, _, miss = Geod(ellps="WGS84").inv(lon2, lat2, ev_lon, ev_lat)
    assert np.max(miss) < 1.0  # metres: the event lies along the back azimuth from the station
    assert np.all((lab["back_azimuth_deg"] >= 0) & (lab["back_azimuth_deg"] < 360))
    np.testing.assert_allclose(lab["sin_baz"] ** 2 + lab["cos_baz"] ** 2, 1.0, atol=1e-12)


def test_event_split_is_deterministic_order_free_and_80_10_10() -> None:
    ids = [f"ev{i}" for i in range(20_000)]
    a = event_split(ids, 7, (0.8, 0.1, 0.1))
    b = event_split(ids[::-1], 7, (0.8, 0.1, 0.1))[::-1]
    assert (a == b).all()
    frac = {s: float(np.mean(a == s)) for s in ("train", "val", "test")}
    assert frac["train"] == pytest.approx(0.8, abs=0.01)
    assert frac["val"] == pytest.approx(0.1, abs=0.01)
    assert (event_split(ids[:100], 8, (0.8, 0.1, 0.1)) != a[:100]).any()  # seed matters


def test_travel_time_table_matches_taup_off_grid() -> None:
    from obspy.taup import TauPyModel

    tt = travel_time_table("iasp91", 5.0)
    model = TauPyModel("iasp91")
    for dist, depth in [(0.37, 7.3), (1.23, 12.9), (3.61, 3.2)]:
        arr = model.get_travel_times(
            source_depth_in_km=depth, distance_in_degree=dist, phase_list=["p", "P", "s", "S"]
        )
        p = min(a.time for a in arr if a.name.upper() == "P")
        s = min(a.time for a in arr if a.name.upper() == "S")
        assert float(tt.p_time(np.array(dist), np.array(depth))) == pytest.approx(p, abs=0.35)
        assert float(tt.s_time(np.array(dist), np.array(depth))) == pytest.approx(s, abs=0.6)


def test_detrend_equals_scipy_and_each_trace_is_independent_of_its_batch() -> None:
    """scipy's lstsq detrend differs in the last bits between a trace alone and in a batch
    (BLAS splits the work); ours must not, so batch size, appends and Dask workers never
    change a stored value. Tolerance vs scipy: 1e-12 relative to the trace amplitude."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 3, 6_000)) * 100 + np.linspace(0, 500, 6_000)
    ours = detrend_linear(x)
    ref = scipy.signal.detrend(x, axis=-1, type="linear")
    assert np.abs(ours - ref).max() <= 1e-12 * np.abs(ref).max()
    chain = {"freqmin_hz": 1.0, "freqmax_hz": 20.0, "corners": 4, "taper_fraction": 0.05}
    batched = preprocess_batch(x, 100.0, **chain)  # float64: a last-bit difference shows here
    for i in (0, 17, 40, 63):
        alone = preprocess_batch(x[i : i + 1], 100.0, **chain)
        assert np.array_equal(alone[0], batched[i]), f"trace {i} depends on its batch"
