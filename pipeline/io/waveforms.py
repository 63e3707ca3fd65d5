"""Seismic file I/O with obspy: waveforms, StationXML inventories, catalogs and picks.

Everything that touches obspy objects lives here; the rest of the seismic pipeline sees
numpy arrays, pandas tables and plain records. Bad input becomes either a clear
:class:`~pipeline.errors.InputError` (whole file unusable as metadata) or a :class:`Reject`
row naming the trace and the reason (one waveform trace unusable).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import InputError, MissingInputError, SchemaError
from pipeline.seismic.signal import TravelTimeTable, great_circle_deg

HORIZONTALS = ("N", "E", "1", "2", "3")


@dataclass(frozen=True)
class Reject:
    """One input trace (or event) that is not in the store, and why."""

    trace_id: str
    reason: str
    detail: str
    source_file: str = ""


@dataclass(frozen=True)
class ChannelEpoch:
    """Station metadata of one channel epoch from the inventory."""

    start: float
    end: float
    latitude: float
    longitude: float
    azimuth: float | None
    dip: float | None
    sample_rate: float | None


@dataclass
class SeismicMetadata:
    """Inventory index, catalog table, picks and the travel-time table for one curation run."""

    channels: dict[tuple[str, str, str, str], list[ChannelEpoch]]
    events: pd.DataFrame  # sorted by time_s; columns below
    picks: dict[tuple[str, str, str], float]  # (event_id, network, station) -> P time (epoch s)
    tt: TravelTimeTable
    rejects: list[Reject] = field(default_factory=list)

    def channel(self, net: str, sta: str, loc: str, cha: str, t: float) -> ChannelEpoch | None:
        """The channel epoch covering time ``t`` (epoch seconds), or None."""
        for ep in self.channels.get((net, sta, loc, cha), []):
            if ep.start <= t <= ep.end:
                return ep
        return None


EVENT_COLUMNS = (
    "event_id",
    "time_s",
    "latitude",
    "longitude",
    "depth_km",
    "magnitude",
    "horizontal_error_km",
)


def _require(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"{what} not found", path=path, fix=f"pass an existing {what} file")
    return path


def _obspy_read(read: Callable[[str], Any], path: Path, what: str, fix: str) -> Any:
    """``read(path)`` with any failure of the obspy reader turned into an InputError naming the file."""
    try:
        return read(str(path))
    except Exception as exc:
        raise InputError(f"cannot read {what} ({type(exc).__name__}: {exc})", path=path, fix=fix) from exc


def read_waveforms(path: str | Path) -> Any:
    """Read any obspy-readable waveform file into an obspy Stream; InputError if unreadable."""
    import obspy

    path = _require(Path(path), "waveform file")
    fix = "check the file is a complete miniSEED/SAC/... file obspy can read, or remove it from the glob"
    return _obspy_read(obspy.read, path, "waveforms", fix)


def load_inventory(path: str | Path) -> dict[tuple[str, str, str, str], list[ChannelEpoch]]:
    """Index a StationXML (or any obspy inventory format) by (net, sta, loc, cha)."""
    import obspy

    path = _require(Path(path), "inventory")
    inv = _obspy_read(obspy.read_inventory, path, "inventory", "pass a valid StationXML file")
    index: dict[tuple[str, str, str, str], list[ChannelEpoch]] = {}
    for net in inv:
        for sta in net:
            for cha in sta:
                lat = cha.latitude if cha.latitude is not None else sta.latitude
                lon = cha.longitude if cha.longitude is not None else sta.longitude
                start = cha.start_date or sta.start_date
                end = cha.end_date or sta.end_date
                index.setdefault((net.code, sta.code, cha.location_code or "", cha.code), []).append(
                    ChannelEpoch(
                        start=-math.inf if start is None else float(start.timestamp),
                        end=math.inf if end is None else float(end.timestamp),
                        latitude=float(lat),
                        longitude=float(lon),
                        azimuth=None if cha.azimuth is None else float(cha.azimuth),
                        dip=None if cha.dip is None else float(cha.dip),
                        sample_rate=None if cha.sample_rate is None else float(cha.sample_rate),
                    )
                )
    return index


def _short_id(resource_id: str) -> str:
    tail = resource_id.rstrip("/").replace("=", "/").split("/")[-1]
    return tail or resource_id


def _horizontal_error_km(origin: Any) -> float:
    ou = origin.origin_uncertainty
    if ou is not None:
        for attr in ("horizontal_uncertainty", "max_horizontal_uncertainty"):
            v = getattr(ou, attr, None)
            if v is not None:
                return float(v) / 1000.0
    lat_e = origin.latitude_errors.uncertainty if origin.latitude_errors else None
    lon_e = origin.longitude_errors.uncertainty if origin.longitude_errors else None
    if lat_e is not None or lon_e is not None:
        km = 111.19
        a = (lat_e or 0.0) * km
        b = (lon_e or 0.0) * km * math.cos(math.radians(origin.latitude))
        return float(max(a, b))
    return float("nan")


def load_catalog(path: str | Path) -> tuple[pd.DataFrame, list[Reject]]:
    """Events as a table (EVENT_COLUMNS) from QuakeML (any obspy format) or CSV.

    CSV columns: event_id, time (ISO 8601), latitude, longitude, depth_km, magnitude,
    horizontal_error_km. Events without a usable origin are returned as rejects.
    """
    path = _require(Path(path), "event catalog")
    rejects: list[Reject] = []
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path)
        missing = [c for c in ("event_id", "time", "latitude", "longitude", "depth_km") if c not in df]
        if missing:
            raise SchemaError(
                f"catalog CSV lacks columns {missing}",
                path=path,
                fix="columns: event_id,time,latitude,longitude,depth_km[,magnitude,horizontal_error_km]",
            )
        from obspy import UTCDateTime

        rows = []
        csv_rows: list[Any] = list(df.itertuples(index=False))
        for r in csv_rows:
            eid = str(r.event_id)
            vals = [r.time, r.latitude, r.longitude, r.depth_km]
            if any(pd.isna(v) for v in vals):
                rejects.append(
                    Reject(f"event:{eid}", "no_origin", "time/latitude/longitude/depth missing", path.name)
                )
                continue
            rows.append(
                (
                    eid,
                    float(UTCDateTime(str(r.time)).timestamp),
                    float(r.latitude),
                    float(r.longitude),
                    float(r.depth_km),
                    float(getattr(r, "magnitude", np.nan)),
                    float(getattr(r, "horizontal_error_km", np.nan)),
                )
            )
    else:
        import obspy

        fix = "pass a QuakeML file (or a CSV with event_id,time,latitude,longitude,depth_km,...)"
        cat = _obspy_read(obspy.read_events, path, "event catalog", fix)
        rows = []
        for ev in cat:
            eid = _short_id(str(ev.resource_id.id))
            origin = ev.preferred_origin() or (ev.origins[0] if ev.origins else None)
            if origin is None or origin.time is None or origin.latitude is None or origin.longitude is None:
                rejects.append(Reject(f"event:{eid}", "no_origin", "event has no usable origin", path.name))
                continue
            mag = ev.preferred_magnitude() or (ev.magnitudes[0] if ev.magnitudes else None)
            depth_km = 0.0 if origin.depth is None else float(origin.depth) / 1000.0
            rows.append(
                (
                    eid,
                    float(origin.time.timestamp),
                    float(origin.latitude),
                    float(origin.longitude),
                    depth_km,
                    float("nan") if mag is None else float(mag.mag),
                    _horizontal_error_km(origin),
                )
            )
    events = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    dup = events["event_id"][events["event_id"].duplicated()].tolist()
    if dup:
        raise SchemaError(f"duplicate event ids {dup[:5]}", path=path, fix="give every event a unique id")
    return events.sort_values("time_s", kind="stable").reset_index(drop=True), rejects


def load_picks(path: str | Path | None, events: pd.DataFrame) -> dict[tuple[str, str, str], float]:
    """P picks as {(event_id, network, station): time}: CSV (event_id,network,station,phase,time) or QuakeML."""
    if path is None:
        return {}
    path = _require(Path(path), "picks file")
    from obspy import UTCDateTime

    picks: dict[tuple[str, str, str], float] = {}
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path, dtype={"network": str, "station": str, "event_id": str})
        missing = [c for c in ("event_id", "network", "station", "phase", "time") if c not in df]
        if missing:
            raise SchemaError(
                f"picks CSV lacks columns {missing}",
                path=path,
                fix="columns: event_id,network,station,phase,time",
            )
        for r in df.itertuples(index=False):
            if str(r.phase).upper().startswith("P"):
                key = (str(r.event_id), str(r.network), str(r.station))
                t = float(UTCDateTime(str(r.time)).timestamp)
                picks[key] = min(t, picks.get(key, t))
        return picks
    import obspy

    fix = "pass QuakeML picks, or a CSV with event_id,network,station,phase,time"
    cat = _obspy_read(obspy.read_events, path, "picks", fix)
    for ev in cat:
        eid = _short_id(str(ev.resource_id.id))
        for p in ev.picks:
            if p.phase_hint and p.phase_hint.upper().startswith("P") and p.waveform_id is not None:
                key = (eid, p.waveform_id.network_code or "", p.waveform_id.station_code or "")
                t = float(p.time.timestamp)
                picks[key] = min(t, picks.get(key, t))
    return picks


def load_metadata(
    inventory: str | Path, events: str | Path, picks: str | Path | None, tt: TravelTimeTable
) -> SeismicMetadata:
    """Read inventory, catalog and picks once per curation run."""
    channels = load_inventory(inventory)
    table, rejects = load_catalog(events)
    return SeismicMetadata(
        channels=channels, events=table, picks=load_picks(picks, table), tt=tt, rejects=rejects
    )


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


def _component_order(comps: dict[str, Any]) -> tuple[str | None, list[str]]:
    z = "Z" if "Z" in comps else None
    horiz = [c for c in HORIZONTALS if c in comps]
    return z, horiz


def extract_segments(
    path: str | Path, meta: SeismicMetadata, params: Any
) -> tuple[list[Segment], list[Reject]]:
    """Cut every station-event window out of one waveform file.

    A window belongs to an event when the event's P arrival at the station (pick, else the
    travel-time table) puts [P - pre - margin, P - pre + window + margin] over the data.
    Every trace that yields no window is returned as a :class:`Reject` with its reason.
    """
    path = Path(path)
    name = path.name
    rejects: list[Reject] = []
    try:
        st = read_waveforms(path)
    except InputError as exc:
        return [], [Reject(f"file:{name}", "unreadable_file", str(exc).splitlines()[0], name)]
    segments: list[Segment] = []
    total = params.margin_s * 2 + params.window_s
    lead = params.pre_p_s + params.margin_s

    # merge per channel id (gaps become masked samples)
    merged: dict[str, Any] = {}
    for sid in sorted({tr.id for tr in st}):
        sub = st.select(id=sid)
        try:
            sub.merge(method=1, fill_value=None)
        except Exception as exc:
            rejects.append(Reject(sid, "sampling_rate_mismatch", f"cannot merge pieces: {exc}", name))
            continue
        merged[sid] = sub[0]

    sensors: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for tr in merged.values():
        s = tr.stats
        key = (s.network, s.station, s.location or "", s.channel[:-1])
        sensors.setdefault(key, {})[s.channel[-1:].upper()] = tr

    ev = meta.events
    ev_times = ev["time_s"].to_numpy()
    max_tt = float(meta.tt.p_s.max())
    ev_herr = ev["horizontal_error_km"].to_numpy(dtype=float)
    ev_ids = ev["event_id"].astype(str).tolist()

    for (net, sta, loc, bi), comps in sorted(sensors.items()):
        seed = f"{net}.{sta}.{loc}.{bi}"
        z, horiz = _component_order(comps)
        if z is None:
            for tr in comps.values():
                rejects.append(Reject(tr.id, "no_vertical", f"sensor {seed} has no Z component", name))
            continue
        use = [z]
        if len(horiz) >= 2:
            use += horiz[:2]
        for c in horiz[2:] if len(horiz) >= 2 else horiz:
            rejects.append(
                Reject(comps[c].id, "incomplete_components", f"{seed}: horizontals {horiz}, used {use}", name)
            )
        trs = [comps[c] for c in use]
        t0 = min(float(tr.stats.starttime.timestamp) for tr in trs)
        rates = {float(tr.stats.sampling_rate) for tr in trs}
        if len(rates) > 1:
            for tr in trs:
                rejects.append(
                    Reject(tr.id, "sampling_rate_mismatch", f"{seed} components at {sorted(rates)} Hz", name)
                )
            continue
        rate = rates.pop()
        if rate < 2 * params.freqmax_hz:
            for tr in trs:
                rejects.append(
                    Reject(
                        tr.id,
                        "sampling_rate_too_low",
                        f"{rate} Hz < 2 x freqmax {params.freqmax_hz} Hz",
                        name,
                    )
                )
            continue
        epochs = [meta.channel(net, sta, loc, tr.stats.channel, t0) for tr in trs]
        if any(e is None for e in epochs):
            miss = [tr.id for tr, e in zip(trs, epochs, strict=True) if e is None]
            for tr in trs:
                rejects.append(
                    Reject(tr.id, "missing_station_metadata", f"not in inventory at {t0}: {miss}", name)
                )
            continue
        eps: list[ChannelEpoch] = [e for e in epochs if e is not None]
        az = np.zeros(3)
        dip = np.zeros(3)
        if len(trs) == 3:
            bad = [tr.id for tr, e in zip(trs, eps, strict=True) if e.azimuth is None or e.dip is None]
            if bad:
                for tr in trs:
                    rejects.append(
                        Reject(tr.id, "missing_orientation", f"no azimuth/dip in inventory: {bad}", name)
                    )
                continue
            az[:] = [e.azimuth for e in eps]
            dip[:] = [e.dip for e in eps]
            m = np.stack(
                [-np.sin(np.radians(dip)), np.cos(np.radians(az)) * np.cos(np.radians(dip)),
                 np.sin(np.radians(az)) * np.cos(np.radians(dip))], axis=-1,
            )  # fmt: skip
            if abs(np.linalg.det(m)) < 0.1:
                for tr in trs:
                    rejects.append(Reject(tr.id, "degenerate_orientation", f"az={az} dip={dip}", name))
                continue
        else:
            zdip = eps[0].dip
            if zdip is not None and abs(abs(zdip) - 90.0) > 5.0:
                rejects.append(
                    Reject(trs[0].id, "missing_orientation", f"Z channel dip {zdip} not vertical", name)
                )
                continue
            az[:] = [0.0, 0.0, 90.0]
            dip[:] = [-90.0 if zdip is None else zdip, 0.0, 0.0]
        if params.reject_inventory_rate_mismatch:
            bad_rate = [
                e.sample_rate for e in eps if e.sample_rate and abs(e.sample_rate - rate) > 0.01 * rate
            ]
            if bad_rate:
                for tr in trs:
                    rejects.append(
                        Reject(
                            tr.id, "sampling_rate_mismatch", f"data {rate} Hz, inventory {bad_rate} Hz", name
                        )
                    )
                continue
        sta_lat, sta_lon = eps[0].latitude, eps[0].longitude
        t_end = max(float(tr.stats.endtime.timestamp) for tr in trs)
        lo = np.searchsorted(ev_times, t0 - max_tt - total - 1.0, side="left")
        hi = np.searchsorted(ev_times, t_end, side="right")
        cand = np.arange(lo, hi)
        found = 0
        if cand.size:
            dist_deg = great_circle_deg(
                np.full(cand.size, sta_lat), np.full(cand.size, sta_lon),
                ev["latitude"].to_numpy()[cand], ev["longitude"].to_numpy()[cand],
            )  # fmt: skip
            keep = dist_deg * 111.195 <= params.max_distance_km
            cand, dist_deg = cand[keep], dist_deg[keep]
        if cand.size:
            tp = ev_times[cand] + meta.tt.p_time(dist_deg, ev["depth_km"].to_numpy()[cand])
            for k, row in enumerate(cand.tolist()):
                eid = ev_ids[row]
                pick = meta.picks.get((eid, net, sta))
                p_time = float(pick) if pick is not None else float(tp[k])
                w0 = p_time - lead
                w1 = w0 + total
                if w1 <= t0 or w0 >= t_end:
                    continue  # this event's window is not in this file
                found += 1
                tid = f"{eid}.{seed}"
                herr = float(ev_herr[row])
                if params.max_horizontal_error_km is not None:
                    if np.isnan(herr):
                        if params.missing_horizontal_error == "reject":
                            rejects.append(
                                Reject(tid, "horizontal_error_missing", "catalog gives none", name)
                            )
                            continue
                    elif herr >= params.max_horizontal_error_km:
                        rejects.append(
                            Reject(
                                tid,
                                "horizontal_error_too_large",
                                f"{herr:.3f} km >= {params.max_horizontal_error_km} km",
                                name,
                            )
                        )
                        continue
                n = round(total * rate)
                data = np.zeros((3, n))
                reason = ""
                n_gap = 0
                for ci, tr in enumerate(trs):
                    i0 = round((w0 - float(tr.stats.starttime.timestamp)) * rate)
                    if i0 < 0 or i0 + n > tr.stats.npts:
                        have = f"{tr.stats.starttime} - {tr.stats.endtime}"
                        reason, detail = (
                            "too_short",
                            f"{tr.id} covers {have}, window needs {total:.1f} s from {w0}",
                        )
                        break
                    seg = tr.data[i0 : i0 + n]
                    if np.ma.isMaskedArray(seg) and np.ma.count_masked(seg):
                        nmask = int(np.ma.count_masked(seg))
                        if params.gap_policy == "reject":
                            reason, detail = "gap", f"{tr.id}: {nmask} missing samples in window"
                            break
                        mask = np.ma.getmaskarray(seg)
                        vals = np.ma.getdata(seg).astype(np.float64)
                        idx = np.arange(n)
                        vals[mask] = np.interp(idx[mask], idx[~mask], vals[~mask]) if (~mask).any() else 0.0
                        seg = vals
                        n_gap += nmask
                    arr = np.asarray(np.ma.getdata(seg), dtype=np.float64)
                    if not np.all(np.isfinite(arr)):
                        reason, detail = (
                            "nan_samples",
                            f"{tr.id}: {int((~np.isfinite(arr)).sum())} non-finite samples",
                        )
                        break
                    if params.clip_counts is not None and np.abs(arr).max() >= params.clip_counts:
                        reason, detail = (
                            "clipped",
                            f"{tr.id}: |x| reaches {np.abs(arr).max():.0f} >= {params.clip_counts}",
                        )
                        break
                    data[ci] = arr
                if reason:
                    rejects.append(Reject(tid, reason, detail, name))
                    continue
                segments.append(
                    Segment(
                        trace_id=tid,
                        event_row=row,
                        network=net,
                        station=sta,
                        location=loc,
                        channel_codes=",".join(tr.stats.channel for tr in trs),
                        sensor_type="3C" if len(trs) == 3 else "1C",
                        rate=rate,
                        data=data,
                        azimuth=az.copy(),
                        dip=dip.copy(),
                        station_latitude=sta_lat,
                        station_longitude=sta_lon,
                        p_time_s=p_time,
                        p_source="pick" if pick is not None else "taup",
                        window_start_s=w0 + params.margin_s,
                        n_gap_samples=n_gap,
                        source_file=name,
                    )
                )
        if found == 0:
            for tr in trs:
                rejects.append(
                    Reject(tr.id, "no_matching_event", f"no catalog event's P window in {seed} data", name)
                )
    return segments, rejects
