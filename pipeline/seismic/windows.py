"""Station-event windows: which sensor, components, orientation and P time make each trace.

Reads nothing itself: :mod:`pipeline.io.waveforms` turns files into :class:`ChannelTrace`
records, inventories into :class:`ChannelEpoch` lists and catalogs into tables; this module
groups channels into sensors, checks them against the station metadata, finds the catalog
events whose P window lies in the data and cuts those windows (:class:`Segment`). Every
trace that yields no window becomes a :class:`Reject` naming the reason, in a fixed order
(sensors by id, then their events by time), so the rejects table is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io.waveforms import (
    ChannelEpoch,
    ChannelTrace,
    Reject,
    load_catalog,
    load_inventory,
    load_picks,
    read_channel_traces,
)
from pipeline.seismic.labels import great_circle_deg
from pipeline.seismic.signal import orientation_matrix
from pipeline.seismic.traveltimes import KM_PER_DEG, TravelTimeTable, travel_time_table
from schemas.seismic import SeismicCurationParams, SeismicInputs

HORIZONTALS = ("N", "E", "1", "2", "3")

SensorKey = tuple[str, str, str, str]  # network, station, location, band + instrument code


@dataclass
class SeismicMetadata:
    """Inventory index, catalog table, picks and the travel-time table for one curation run."""

    channels: dict[tuple[str, str, str, str], list[ChannelEpoch]]
    events: pd.DataFrame  # sorted by time_s; columns pipeline.io.waveforms.EVENT_COLUMNS
    picks: dict[tuple[str, str, str], float]  # (event_id, network, station) -> P time (epoch s)
    tt: TravelTimeTable
    rejects: list[Reject] = field(default_factory=list)

    @cached_property
    def event_columns(self) -> dict[str, np.ndarray]:
        """The catalog's columns as numpy arrays (``event_id`` as str), read once per run."""
        ev = self.events
        cols = {c: ev[c].to_numpy(dtype=float) for c in ("time_s", "latitude", "longitude", "depth_km")}
        cols["horizontal_error_km"] = ev["horizontal_error_km"].to_numpy(dtype=float)
        cols["event_id"] = ev["event_id"].astype(str).to_numpy(dtype=str)
        return cols

    def channel(self, net: str, sta: str, loc: str, cha: str, t: float) -> ChannelEpoch | None:
        """The channel epoch covering time ``t`` (epoch seconds), or None."""
        for ep in self.channels.get((net, sta, loc, cha), []):
            if ep.start <= t <= ep.end:
                return ep
        return None


def load_metadata(
    inventory: str | Path, events: str | Path, picks: str | Path | None, tt: TravelTimeTable
) -> SeismicMetadata:
    """Read inventory, catalog and picks once per curation run."""
    channels = load_inventory(inventory)
    table, rejects = load_catalog(events)
    return SeismicMetadata(
        channels=channels, events=table, picks=load_picks(picks, table), tt=tt, rejects=rejects
    )


def metadata_for(inputs: SeismicInputs, params: SeismicCurationParams) -> SeismicMetadata:
    """Read the run's inventory, catalog and picks and get the travel-time table."""
    max_deg = max(5.0, params.max_distance_km / KM_PER_DEG + 0.2)
    tt = travel_time_table(params.taup_model, round(max_deg, 1))
    return load_metadata(inputs.inventory, inputs.events, inputs.picks, tt)


@dataclass
class Segment:
    """Raw samples of one station-event window (all components), before preprocessing."""

    trace_id: str
    event_row: int
    network: str
    station: str
    location: str
    channel_codes: str
    sensor_type: str
    rate: float
    data: np.ndarray  # [3, n] float64: Z-like, then two horizontals (zeros for 1C)
    azimuth: np.ndarray  # [3]
    dip: np.ndarray  # [3]
    station_latitude: float
    station_longitude: float
    p_time_s: float
    p_source: str
    window_start_s: float
    n_gap_samples: int
    source_file: str


@dataclass
class Sensor:
    """One usable sensor of a file: its components (Z first), rate, orientation and position."""

    network: str
    station: str
    location: str
    seed: str  # NET.STA.LOC.BI
    traces: list[ChannelTrace]
    rate: float
    azimuth: np.ndarray  # [3] degrees (1C: 0, 0, 90)
    dip: np.ndarray  # [3] degrees
    latitude: float
    longitude: float
    start_s: float
    end_s: float


def group_sensors(traces: list[ChannelTrace]) -> dict[SensorKey, dict[str, ChannelTrace]]:
    """Channels by sensor (network, station, location, channel code minus its component letter)."""
    sensors: dict[SensorKey, dict[str, ChannelTrace]] = {}
    for tr in traces:
        key = (tr.network, tr.station, tr.location, tr.channel[:-1])
        sensors.setdefault(key, {})[tr.channel[-1:].upper()] = tr
    return sensors


def _components(
    seed: str, comps: dict[str, ChannelTrace], name: str, rejects: list[Reject]
) -> list[ChannelTrace] | None:
    """Z, then two horizontals when there are at least two (else Z alone); None without Z."""
    if "Z" not in comps:
        for tr in comps.values():
            rejects.append(Reject(tr.id, "no_vertical", f"sensor {seed} has no Z component", name))
        return None
    horiz = [c for c in HORIZONTALS if c in comps]
    use = ["Z"]
    if len(horiz) >= 2:
        use += horiz[:2]
    for c in horiz[2:] if len(horiz) >= 2 else horiz:
        rejects.append(
            Reject(comps[c].id, "incomplete_components", f"{seed}: horizontals {horiz}, used {use}", name)
        )
    return [comps[c] for c in use]


def _reject_all(trs: list[ChannelTrace], reason: str, detail: str, name: str, rejects: list[Reject]) -> None:
    rejects.extend(Reject(tr.id, reason, detail, name) for tr in trs)


def _sampling_rate(
    seed: str, trs: list[ChannelTrace], params: SeismicCurationParams, name: str, rejects: list[Reject]
) -> float | None:
    """The components' common sampling rate, or None when they differ or it is below 2 x freqmax."""
    rates = {tr.sampling_rate for tr in trs}
    if len(rates) > 1:
        _reject_all(trs, "sampling_rate_mismatch", f"{seed} components at {sorted(rates)} Hz", name, rejects)
        return None
    rate = rates.pop()
    if rate < 2 * params.freqmax_hz:
        detail = f"{rate} Hz < 2 x freqmax {params.freqmax_hz} Hz"
        _reject_all(trs, "sampling_rate_too_low", detail, name, rejects)
        return None
    return rate


def _orientation(
    trs: list[ChannelTrace], eps: list[ChannelEpoch], name: str, rejects: list[Reject]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-component azimuth and dip [3] from the inventory; None when missing or degenerate.

    1C sensors get (Z, N, E) = (0, 0, 90) azimuths and the Z dip (-90 when not given); their
    Z must be within 5 degrees of vertical.
    """
    az = np.zeros(3)
    dip = np.zeros(3)
    if len(trs) == 3:
        bad = [tr.id for tr, e in zip(trs, eps, strict=True) if e.azimuth is None or e.dip is None]
        if bad:
            _reject_all(trs, "missing_orientation", f"no azimuth/dip in inventory: {bad}", name, rejects)
            return None
        az[:] = [e.azimuth for e in eps]
        dip[:] = [e.dip for e in eps]
        if abs(np.linalg.det(orientation_matrix(az, dip))) < 0.1:
            _reject_all(trs, "degenerate_orientation", f"az={az} dip={dip}", name, rejects)
            return None
        return az, dip
    zdip = eps[0].dip
    if zdip is not None and abs(abs(zdip) - 90.0) > 5.0:
        rejects.append(Reject(trs[0].id, "missing_orientation", f"Z channel dip {zdip} not vertical", name))
        return None
    az[:] = [0.0, 0.0, 90.0]
    dip[:] = [-90.0 if zdip is None else zdip, 0.0, 0.0]
    return az, dip


def _sensor(
    key: SensorKey,
    comps: dict[str, ChannelTrace],
    meta: SeismicMetadata,
    params: SeismicCurationParams,
    name: str,
    rejects: list[Reject],
) -> Sensor | None:
    """The checked sensor, or None (with its rejects) when it cannot give any window."""
    net, sta, loc, bi = key
    seed = f"{net}.{sta}.{loc}.{bi}"
    trs = _components(seed, comps, name, rejects)
    if trs is None:
        return None
    t0 = min(tr.start_s for tr in trs)
    rate = _sampling_rate(seed, trs, params, name, rejects)
    if rate is None:
        return None
    epochs = [meta.channel(net, sta, loc, tr.channel, t0) for tr in trs]
    if any(e is None for e in epochs):
        miss = [tr.id for tr, e in zip(trs, epochs, strict=True) if e is None]
        _reject_all(trs, "missing_station_metadata", f"not in inventory at {t0}: {miss}", name, rejects)
        return None
    eps: list[ChannelEpoch] = [e for e in epochs if e is not None]
    orientation = _orientation(trs, eps, name, rejects)
    if orientation is None:
        return None
    if params.reject_inventory_rate_mismatch:
        bad_rate = [e.sample_rate for e in eps if e.sample_rate and abs(e.sample_rate - rate) > 0.01 * rate]
        if bad_rate:
            detail = f"data {rate} Hz, inventory {bad_rate} Hz"
            _reject_all(trs, "sampling_rate_mismatch", detail, name, rejects)
            return None
    return Sensor(
        network=net,
        station=sta,
        location=loc,
        seed=seed,
        traces=trs,
        rate=rate,
        azimuth=orientation[0],
        dip=orientation[1],
        latitude=eps[0].latitude,
        longitude=eps[0].longitude,
        start_s=t0,
        end_s=max(tr.end_s for tr in trs),
    )


@dataclass
class _Candidates:
    """Catalog events that may have a P window in each sensor's data, within ``max_distance_km``.

    Flat over (sensor, event) pairs in sensor order, then event time: ``sensor`` index, catalog
    ``row``, and predicted P time ``tp`` (epoch s); ``start[i]:start[i + 1]`` are sensor i's pairs.
    """

    sensor: np.ndarray
    row: np.ndarray
    tp: np.ndarray
    start: np.ndarray


def _candidate_events(
    sensors: list[Sensor], meta: SeismicMetadata, params: SeismicCurationParams, total: float
) -> _Candidates:
    """Every sensor's candidate events at once (one distance and one travel-time call per file)."""
    ev = meta.event_columns
    max_tt = float(meta.tt.p_s.max())
    starts = np.array([s.start_s for s in sensors], dtype=float)
    ends = np.array([s.end_s for s in sensors], dtype=float)
    lo = np.searchsorted(ev["time_s"], starts - max_tt - total - 1.0, side="left")
    hi = np.searchsorted(ev["time_s"], ends, side="right")
    counts = np.maximum(hi - lo, 0)
    sensor = np.repeat(np.arange(len(sensors)), counts)
    row = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
    lat = np.array([s.latitude for s in sensors], dtype=float)
    lon = np.array([s.longitude for s in sensors], dtype=float)
    dist_deg = great_circle_deg(lat[sensor], lon[sensor], ev["latitude"][row], ev["longitude"][row])
    keep = dist_deg * KM_PER_DEG <= params.max_distance_km
    sensor, row, dist_deg = sensor[keep], row[keep], dist_deg[keep]
    tp = ev["time_s"][row] + meta.tt.p_time(dist_deg, ev["depth_km"][row]) if row.size else np.zeros(0)
    start = np.searchsorted(sensor, np.arange(len(sensors) + 1), side="left")
    return _Candidates(sensor, row, tp, start)


def _horizontal_error_reject(
    tid: str, herr: float, params: SeismicCurationParams, name: str
) -> Reject | None:
    """The reject for an event whose catalog horizontal error fails the filter, else None."""
    if params.max_horizontal_error_km is None:
        return None
    if np.isnan(herr):
        if params.missing_horizontal_error == "reject":
            return Reject(tid, "horizontal_error_missing", "catalog gives none", name)
        return None
    if herr >= params.max_horizontal_error_km:
        detail = f"{herr:.3f} km >= {params.max_horizontal_error_km} km"
        return Reject(tid, "horizontal_error_too_large", detail, name)
    return None


def _cut_window(
    sensor: Sensor, w0: float, total: float, params: SeismicCurationParams
) -> tuple[np.ndarray, int, str, str]:
    """Samples [3, n] of every component from ``w0`` for ``total`` s, and the gap count.

    Returns ``(data, n_gap_samples, reason, detail)``; ``reason`` is empty when the window is
    usable, else ``too_short``, ``gap`` (gap_policy "reject"; "fill" interpolates linearly),
    ``nan_samples`` or ``clipped``.
    """
    rate = sensor.rate
    n = round(total * rate)
    data = np.zeros((3, n))
    n_gap = 0
    for ci, tr in enumerate(sensor.traces):
        i0 = round((w0 - tr.start_s) * rate)
        if i0 < 0 or i0 + n > tr.npts:
            have = tr.span_text
            return data, n_gap, "too_short", f"{tr.id} covers {have}, window needs {total:.1f} s from {w0}"
        seg = tr.data[i0 : i0 + n]
        if np.ma.isMaskedArray(seg) and np.ma.count_masked(seg):
            nmask = int(np.ma.count_masked(seg))
            if params.gap_policy == "reject":
                return data, n_gap, "gap", f"{tr.id}: {nmask} missing samples in window"
            mask = np.ma.getmaskarray(seg)
            vals = np.ma.getdata(seg).astype(np.float64)
            idx = np.arange(n)
            vals[mask] = np.interp(idx[mask], idx[~mask], vals[~mask]) if (~mask).any() else 0.0
            seg = vals
            n_gap += nmask
        arr = np.asarray(np.ma.getdata(seg), dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            return data, n_gap, "nan_samples", f"{tr.id}: {int((~np.isfinite(arr)).sum())} non-finite samples"
        if params.clip_counts is not None and np.abs(arr).max() >= params.clip_counts:
            detail = f"{tr.id}: |x| reaches {np.abs(arr).max():.0f} >= {params.clip_counts}"
            return data, n_gap, "clipped", detail
        data[ci] = arr
    return data, n_gap, "", ""


def _sensor_segments(
    sensor: Sensor,
    rows: np.ndarray,
    tp: np.ndarray,
    meta: SeismicMetadata,
    params: SeismicCurationParams,
    name: str,
    rejects: list[Reject],
) -> list[Segment]:
    """Every event window of one sensor (P from the pick, else the travel-time table ``tp``)."""
    total = params.margin_s * 2 + params.window_s
    lead = params.pre_p_s + params.margin_s
    ev = meta.event_columns
    segments: list[Segment] = []
    found = 0
    channel_codes = ",".join(tr.channel for tr in sensor.traces)
    sensor_type = "3C" if len(sensor.traces) == 3 else "1C"
    for row, tp_row in zip(rows.tolist(), tp.tolist(), strict=True):
        eid = str(ev["event_id"][row])
        pick = meta.picks.get((eid, sensor.network, sensor.station))
        p_time = float(pick) if pick is not None else tp_row
        w0 = p_time - lead
        if w0 + total <= sensor.start_s or w0 >= sensor.end_s:
            continue  # this event's window is not in this file
        found += 1
        tid = f"{eid}.{sensor.seed}"
        bad_event = _horizontal_error_reject(tid, float(ev["horizontal_error_km"][row]), params, name)
        if bad_event is not None:
            rejects.append(bad_event)
            continue
        data, n_gap, reason, detail = _cut_window(sensor, w0, total, params)
        if reason:
            rejects.append(Reject(tid, reason, detail, name))
            continue
        segments.append(
            Segment(
                trace_id=tid,
                event_row=row,
                network=sensor.network,
                station=sensor.station,
                location=sensor.location,
                channel_codes=channel_codes,
                sensor_type=sensor_type,
                rate=sensor.rate,
                data=data,
                azimuth=sensor.azimuth,
                dip=sensor.dip,
                station_latitude=sensor.latitude,
                station_longitude=sensor.longitude,
                p_time_s=p_time,
                p_source="pick" if pick is not None else "taup",
                window_start_s=w0 + params.margin_s,
                n_gap_samples=n_gap,
                source_file=name,
            )
        )
    if found == 0:
        detail = f"no catalog event's P window in {sensor.seed} data"
        _reject_all(sensor.traces, "no_matching_event", detail, name, rejects)
    return segments


def extract_segments(
    path: str | Path, meta: SeismicMetadata, params: SeismicCurationParams
) -> tuple[list[Segment], list[Reject]]:
    """Cut every station-event window out of one waveform file.

    A window belongs to an event when the event's P arrival at the station (pick, else the
    travel-time table) puts [P - pre - margin, P - pre + window + margin] over the data.
    Every trace that yields no window is returned as a :class:`Reject` with its reason.
    """
    name = Path(path).name
    traces, rejects = read_channel_traces(path)
    checked: list[tuple[Sensor | None, list[Reject]]] = []
    for key, comps in sorted(group_sensors(traces).items()):
        own: list[Reject] = []
        checked.append((_sensor(key, comps, meta, params, name, own), own))
    sensors = [s for s, _ in checked if s is not None]
    cand = _candidate_events(sensors, meta, params, params.margin_s * 2 + params.window_s)
    segments: list[Segment] = []
    i = 0
    for sensor, own in checked:  # rejects in sensor order, each sensor's windows after its checks
        rejects += own
        if sensor is not None:
            pairs = slice(cand.start[i], cand.start[i + 1])
            segments += _sensor_segments(sensor, cand.row[pairs], cand.tp[pairs], meta, params, name, rejects)
            i += 1
    return segments, rejects
