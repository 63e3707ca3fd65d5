"""Synthetic Utah-like regional seismic network for demos and tests (clearly synthetic data).

No real Utah waveforms can be downloaded here, so :func:`generate_seismic_network` writes a
network in the formats real inputs come in — miniSEED (one file per event, all stations),
StationXML (channel azimuth/dip, a flat sensitivity), QuakeML (origin uncertainties) and a
picks CSV — so curation reads it exactly as it would read real data. Physics kept on purpose:
real iasp91 P and S travel times (obspy.taup, via one interpolated table), distance-dependent
amplitude, corner frequency and coda length, P polarised along the event→station direction on
three-component sensors (so back azimuth is recoverable from 3C data) and only a weak
azimuth-dependent path signature on vertical-only sensors, S mostly transverse, and noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.seismic.signal import geodesic_inv, great_circle_deg, travel_time_table

BOX = (34.7, 46.3, -117.0, -106.7)  # lat min, lat max, lon min, lon max (report section 4.3)
CORE = (37.0, 42.0, -114.0, -109.0)  # Utah: where most stations and events are
NETWORK = "SY"
FS = 100.0
START = "2024-01-01T00:00:00"
CLIP = 8_388_607  # 24-bit digitiser


@dataclass
class SeismicNetwork:
    """Paths and counts of a generated network."""

    out_dir: Path
    waveform_files: list[Path]
    inventory: Path
    events: Path
    picks: Path
    truth: Path
    readme: Path
    seed: int
    n_stations: int
    n_events: int
    n_observations: int
    n_channel_traces: int
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def waveform_glob(self) -> str:
        """Glob matching every waveform file."""
        return str(self.out_dir / "waveforms" / "*.mseed")


def _uniform_in(
    rng: np.random.Generator, box: tuple[float, float, float, float], n: int
) -> tuple[np.ndarray, np.ndarray]:
    lat = rng.uniform(box[0], box[1], n)
    lon = rng.uniform(box[2], box[3], n)
    return lat, lon


def _mixture(rng: np.random.Generator, n: int, core_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    lat, lon = _uniform_in(rng, BOX, n)
    core = rng.random(n) < core_fraction
    clat, clon = _uniform_in(rng, CORE, int(core.sum()))
    lat[core], lon[core] = clat, clon
    return lat, lon


def _bandlimited(rng: np.random.Generator, shape: tuple[int, ...], n: int, gain: np.ndarray) -> np.ndarray:
    """Unit-RMS noise [..., n] shaped by the amplitude response ``gain`` [..., n//2+1] (batched FFT)."""
    white = rng.standard_normal((*shape, n), dtype=np.float32)
    spec = np.fft.rfft(white, axis=-1) * gain
    x = np.fft.irfft(spec, n=n, axis=-1).astype(np.float32)
    x /= np.sqrt(np.mean(x**2, axis=-1, keepdims=True)) + 1e-12
    return x


def _envelope(t: np.ndarray, t0: np.ndarray, rise: float, tau: np.ndarray) -> np.ndarray:
    dt = t[None, :] - t0[:, None]
    pos = np.clip(dt, 0.0, None)
    return np.where(dt >= 0, (1 - np.exp(-pos / rise)) * np.exp(-pos / tau[:, None]), 0.0).astype(np.float32)


def synthesize_event(
    rng: np.random.Generator,
    *,
    distance_km: np.ndarray,
    depth_km: float,
    magnitude: float,
    az_event_to_station_deg: np.ndarray,
    s_minus_p_s: np.ndarray,
    station_theta_deg: np.ndarray,
    noise_rms: np.ndarray,
    pre_p_s: float,
    record_s: float,
) -> np.ndarray:
    """Ground motion (Z up, N, E) in counts, [n_obs, 3, n_samples] float32, P at ``pre_p_s``.

    P: radial motion ``pol * (cos i, sin i cos az, sin i sin az)`` with az the event→station
    azimuth, so on 3C sensors the horizontal P motion points away from the event (toward it
    for negative polarity, with Z flipped too). S: transverse plus some SV. The only azimuth
    dependence a vertical sensor sees is a weak (±10-15 %) path term in corner frequency and
    amplitude. Vectorised over every observation of the event.
    """
    k = distance_km.size
    n = round(record_s * FS)
    t = np.arange(n) / FS
    f = np.fft.rfftfreq(n, 1 / FS)
    r = np.sqrt(distance_km**2 + depth_km**2)
    az = np.radians(az_event_to_station_deg)
    path = np.cos(az - np.radians(station_theta_deg))
    fc_p = (2.0 + 10.0 * np.exp(-distance_km / 100.0)) * (1 + 0.1 * path)
    fc_s = 0.6 * fc_p
    hp = (f / 0.5) ** 2 / (1 + (f / 0.5) ** 2)

    def gain(fc: np.ndarray) -> np.ndarray:
        return (hp[None, :] / (1 + (f[None, :] / fc[:, None]) ** 2)).astype(np.float32)

    g_p, g_s = gain(fc_p), gain(fc_s)
    sp = _bandlimited(rng, (k,), n, g_p)
    s_t = _bandlimited(rng, (k,), n, g_s)
    s_v = _bandlimited(rng, (k,), n, g_s)
    noise_gain = (hp / (1 + (f / 4.0) ** 1.5)).astype(np.float32)
    noise = _bandlimited(rng, (k, 3), n, noise_gain) * noise_rms[:, None, None].astype(np.float32)

    amp_p = noise_rms * 10 ** (magnitude + 0.3) * (10.0 / r) ** 1.3 * np.exp(-0.002 * r) * (1 + 0.15 * path)
    amp_s = 2.0 * amp_p
    env_p = _envelope(t, np.full(k, pre_p_s), 0.05, 1.5 + distance_km / 40.0) * amp_p[:, None].astype(
        np.float32
    )
    env_s = _envelope(t, pre_p_s + s_minus_p_s, 0.1, 3.0 + distance_km / 25.0) * amp_s[:, None].astype(
        np.float32
    )
    pol = rng.choice(np.array([-1.0, 1.0]), size=k)
    sin_i = 0.25 + 0.45 * distance_km / (distance_km + depth_km + 10.0)
    cos_i = np.sqrt(1 - sin_i**2)
    p_motion = sp * env_p * pol[:, None].astype(np.float32)
    radial = p_motion * sin_i[:, None] + 0.6 * s_v * env_s
    transverse = s_t * env_s
    z = p_motion * cos_i[:, None] + 0.3 * s_v * env_s
    ca, sa = np.cos(az)[:, None], np.sin(az)[:, None]
    north = radial * ca - transverse * sa
    east = radial * sa + transverse * ca
    return (np.stack([z, north, east], axis=1) + noise).astype(np.float32)


def _write_inventory(path: Path, stations: pd.DataFrame) -> None:
    from obspy import UTCDateTime
    from obspy.core.inventory import Channel, Inventory, Network, Station
    from obspy.core.inventory.response import InstrumentSensitivity, Response

    start = UTCDateTime("2020-01-01")
    sta_objs = []
    station_rows: list[Any] = list(stations.itertuples(index=False))
    for s in station_rows:
        chans = []
        for code, az, dip in zip(s.channels.split(","), s.azimuths, s.dips, strict=True):
            chans.append(
                Channel(
                    code=code,
                    location_code="",
                    latitude=s.latitude,
                    longitude=s.longitude,
                    elevation=s.elevation_m,
                    depth=0.0,
                    azimuth=az,
                    dip=dip,
                    sample_rate=FS,
                    start_date=start,
                    response=Response(
                        instrument_sensitivity=InstrumentSensitivity(
                            value=6.0e8, frequency=1.0, input_units="M/S", output_units="COUNTS"
                        )
                    ),
                )
            )
        sta_objs.append(
            Station(
                code=s.station,
                latitude=s.latitude,
                longitude=s.longitude,
                elevation=s.elevation_m,
                start_date=start,
                channels=chans,
                site=None,
            )
        )
    inv = Inventory(
        networks=[Network(code=NETWORK, stations=sta_objs, description="emin-fusion SYNTHETIC network")],
        source="emin-fusion synthetic (pipeline.synthetic.seismic_network)",
    )
    inv.write(str(path), format="STATIONXML")


def _write_quakeml(path: Path, events: pd.DataFrame) -> None:
    from obspy import UTCDateTime
    from obspy.core.event import (
        Catalog,
        Event,
        Magnitude,
        Origin,
        OriginUncertainty,
        QuantityError,
        ResourceIdentifier,
    )

    evs = []
    event_rows: list[Any] = list(events.itertuples(index=False))
    for e in event_rows:
        err_m = float(e.horizontal_error_km) * 1000.0
        origin = Origin(
            resource_id=ResourceIdentifier(f"smi:local/emin-synth/origin/{e.event_id}"),
            time=UTCDateTime(float(e.time_s)),
            latitude=float(e.latitude),
            longitude=float(e.longitude),
            depth=float(e.depth_km) * 1000.0,
            latitude_errors=QuantityError(uncertainty=err_m / 111_195.0),
            longitude_errors=QuantityError(
                uncertainty=err_m / (111_195.0 * math.cos(math.radians(float(e.latitude))))
            ),
            origin_uncertainty=OriginUncertainty(
                horizontal_uncertainty=err_m, preferred_description="horizontal uncertainty"
            ),
        )
        mag = Magnitude(mag=float(e.magnitude), magnitude_type="ML", origin_id=origin.resource_id)
        ev = Event(
            resource_id=ResourceIdentifier(f"smi:local/emin-synth/event/{e.event_id}"),
            origins=[origin],
            magnitudes=[mag],
            event_type="earthquake",
        )
        ev.preferred_origin_id = origin.resource_id
        ev.preferred_magnitude_id = mag.resource_id
        evs.append(ev)
    Catalog(events=evs, description="emin-fusion SYNTHETIC catalog").write(str(path), format="QUAKEML")


README = """# Synthetic seismic network (emin-fusion demo data) — NOT REAL DATA

Generated by `pipeline.synthetic.seismic_network.generate_seismic_network(seed={seed}, n_stations={n_stations},
n_events={n_events})`. Every file here is synthetic; no real recording is included.

- `waveforms/<event_id>.mseed`: miniSEED (STEIM2, int32 counts, {fs:g} Hz), one file per event with
  every station that recorded it; each record spans P-{pre:g} s to P+{post:g} s.
- `stations.xml`: StationXML, network `{net}`: {n_1c} vertical-only stations (`EHZ`) and {n_3c}
  three-component stations (`HHZ/HHN/HHE`, or `HHZ/HH1/HH2` with the horizontal azimuths given
  in the channel orientation), flat sensitivity 6e8 counts/(m/s).
- `events.xml`: QuakeML, {n_events} events (depth 0-20 km, ML 1-4 Gutenberg-Richter b=1) with
  `origin_uncertainty.horizontal_uncertainty` (m) and latitude/longitude errors (deg).
- `picks.csv`: P picks (event_id, network, station, phase, time) for a ~30 % subset.
- `truth.csv`: per observation: true P/S times, distance_km, event->station azimuth.

Physics: iasp91 P and S travel times (obspy.taup table, bilinear), plus a per-station static delay
(so picks and predictions differ slightly); amplitude ~ 10^M r^-1.3 e^(-0.002 r); corner frequency
and coda length vary with distance; P polarised radially on 3C sensors; S mostly transverse;
band-limited background noise; samples clipped at 2^23-1 counts.
Observations: {n_obs} station-event pairs ({n_traces} channel traces).
"""


def generate_seismic_network(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_stations: int = 280,
    n_events: int = 500,
    three_component_fraction: float = 0.34,
    rotated_fraction: float = 1 / 3,
    max_distance_km: float = 450.0,
    pre_p_s: float = 30.0,
    post_p_s: float = 130.0,
    pick_fraction: float = 0.3,
    min_stations_per_event: int = 3,
) -> SeismicNetwork:
    """Write a deterministic synthetic Utah-like network under ``out_dir``; see module docstring.

    Which stations record an event: probability ``exp(-(d / L)^1.5)`` with
    ``L = 45 km * 10^(0.3 (M - 1))`` (larger events are seen farther), distance <= 450 km,
    plus the nearest ``min_stations_per_event`` stations.
    """
    from obspy import Stream, Trace, UTCDateTime

    out = Path(out_dir)
    wdir = out / "waveforms"
    wdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tt = travel_time_table("iasp91", 5.0)

    # stations
    s_lat, s_lon = _mixture(rng, n_stations, 0.75)
    n3 = round(three_component_fraction * n_stations)
    is3 = np.zeros(n_stations, dtype=bool)
    is3[rng.permutation(n_stations)[:n3]] = True
    rotated = is3 & (rng.random(n_stations) < rotated_fraction)
    a1 = rng.uniform(0, 360, n_stations).round(1)
    theta = rng.uniform(0, 360, n_stations)
    noise_rms = 60.0 * np.exp(rng.normal(0, 0.3, n_stations))
    delay = rng.normal(0, 0.3, n_stations)
    rows = []
    for i in range(n_stations):
        if rotated[i]:
            chans, azs, dips = (
                "HHZ,HH1,HH2",
                [0.0, float(a1[i]), float((a1[i] + 90) % 360)],
                [-90.0, 0.0, 0.0],
            )
        elif is3[i]:
            chans, azs, dips = "HHZ,HHN,HHE", [0.0, 0.0, 90.0], [-90.0, 0.0, 0.0]
        else:
            chans, azs, dips = "EHZ", [0.0], [-90.0]
        rows.append((f"S{i:03d}", s_lat[i], s_lon[i], float(rng.uniform(1200, 3000)), chans, azs, dips))
    stations = pd.DataFrame(
        rows, columns=["station", "latitude", "longitude", "elevation_m", "channels", "azimuths", "dips"]
    )

    # events
    e_lat, e_lon = _mixture(rng, n_events, 0.8)
    depth = np.clip(rng.gamma(3.0, 2.5, n_events), 0.0, 20.0).round(2)
    mag = (1.0 - np.log10(1 - rng.random(n_events) * (1 - 10**-3.0))).round(2)
    t0 = UTCDateTime(START).timestamp
    times = t0 + np.cumsum(600.0 + rng.exponential(60_000.0, n_events)).round(2)
    herr = np.exp(rng.normal(math.log(0.7), 0.8, n_events)).round(3)
    ev_ids = [f"s{seed}e{i:05d}" for i in range(n_events)]
    events = pd.DataFrame(
        {
            "event_id": ev_ids,
            "time_s": times,
            "latitude": e_lat,
            "longitude": e_lon,
            "depth_km": depth,
            "magnitude": mag,
            "horizontal_error_km": herr,
        }
    )

    truth_rows = []
    pick_rows = []
    files = []
    n_traces = 0
    counts = {"1C": 0, "3C": 0, "clipped_traces": 0}
    for e in range(n_events):
        d_km, az_es, _ = geodesic_inv(
            np.full(n_stations, e_lat[e]), np.full(n_stations, e_lon[e]), s_lat, s_lon
        )
        length = 45.0 * 10 ** (0.3 * (mag[e] - 1))
        p = np.exp(-((d_km / length) ** 1.5))
        seen = (rng.random(n_stations) < p) & (d_km <= max_distance_km)
        seen[np.argsort(d_km)[:min_stations_per_event]] = True
        idx = np.flatnonzero(seen)
        deg = great_circle_deg(
            np.full(idx.size, e_lat[e]), np.full(idx.size, e_lon[e]), s_lat[idx], s_lon[idx]
        )
        tp = tt.p_time(deg, np.full(idx.size, depth[e])) + delay[idx]
        ts = tt.s_time(deg, np.full(idx.size, depth[e])) + 1.7 * delay[idx]
        motion = synthesize_event(
            rng,
            distance_km=d_km[idx],
            depth_km=float(depth[e]),
            magnitude=float(mag[e]),
            az_event_to_station_deg=az_es[idx],
            s_minus_p_s=ts - tp,
            station_theta_deg=theta[idx],
            noise_rms=noise_rms[idx],
            pre_p_s=pre_p_s,
            record_s=pre_p_s + post_p_s,
        )
        st = Stream()
        for j, s in enumerate(idx.tolist()):
            start = UTCDateTime(float(times[e] + tp[j] - pre_p_s))
            srow = stations.iloc[s]
            zne = motion[j]
            if rotated[s]:
                ar = np.radians(np.array(srow.azimuths[1:]))
                comps = [zne[0], zne[1] * np.cos(ar[0]) + zne[2] * np.sin(ar[0]),
                         zne[1] * np.cos(ar[1]) + zne[2] * np.sin(ar[1])]  # fmt: skip
            elif is3[s]:
                comps = [zne[0], zne[1], zne[2]]
            else:
                comps = [zne[0]]
            for code, x in zip(srow.channels.split(","), comps, strict=True):
                xi = np.round(x)
                if np.abs(xi).max() >= CLIP:
                    counts["clipped_traces"] += 1
                data = np.clip(xi, -CLIP, CLIP).astype(np.int32)
                tr = Trace(data=data)
                tr.stats.network, tr.stats.station, tr.stats.location, tr.stats.channel = (
                    NETWORK,
                    srow.station,
                    "",
                    code,
                )
                tr.stats.sampling_rate = FS
                tr.stats.starttime = start
                st.append(tr)
                n_traces += 1
            counts["3C" if is3[s] else "1C"] += 1
            p_abs = UTCDateTime(float(times[e] + tp[j]))
            truth_rows.append(
                (ev_ids[e], NETWORK, srow.station, "3C" if is3[s] else "1C", float(d_km[s]),
                 float(az_es[s]), str(p_abs), str(UTCDateTime(float(times[e] + ts[j]))))
            )  # fmt: skip
            if rng.random() < pick_fraction:
                pick_rows.append(
                    (ev_ids[e], NETWORK, srow.station, "P", str(p_abs + float(rng.normal(0, 0.03))))
                )
        path = wdir / f"{ev_ids[e]}.mseed"
        st.write(str(path), format="MSEED", encoding="STEIM2", reclen=4096)
        files.append(path)

    inventory = out / "stations.xml"
    _write_inventory(inventory, stations)
    quakeml = out / "events.xml"
    _write_quakeml(quakeml, events)
    picks = out / "picks.csv"
    pd.DataFrame(pick_rows, columns=["event_id", "network", "station", "phase", "time"]).to_csv(
        picks, index=False
    )
    truth = out / "truth.csv"
    pd.DataFrame(
        truth_rows,
        columns=["event_id", "network", "station", "sensor_type", "distance_km", "azimuth_event_to_station_deg",
                 "p_time", "s_time"],
    ).to_csv(truth, index=False)  # fmt: skip
    readme = out / "README.md"
    readme.write_text(
        README.format(
            seed=seed,
            n_stations=n_stations,
            n_events=n_events,
            fs=FS,
            pre=pre_p_s,
            post=post_p_s,
            net=NETWORK,
            n_1c=int((~is3).sum()),
            n_3c=int(is3.sum()),
            n_obs=len(truth_rows),
            n_traces=n_traces,
        )
    )
    return SeismicNetwork(
        out_dir=out,
        waveform_files=files,
        inventory=inventory,
        events=quakeml,
        picks=picks,
        truth=truth,
        readme=readme,
        seed=seed,
        n_stations=n_stations,
        n_events=n_events,
        n_observations=len(truth_rows),
        n_channel_traces=n_traces,
        counts=counts,
    )
