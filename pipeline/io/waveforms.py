"""Seismic file I/O with obspy: waveforms, StationXML inventories, catalogs and picks.

Everything that touches obspy objects lives here; the rest of the seismic pipeline sees
numpy arrays, pandas tables and plain records (:class:`ChannelTrace`, :class:`ChannelEpoch`,
:class:`Reject`); windowing and labelling are in :mod:`pipeline.seismic.windows`. Bad input
becomes either a clear :class:`~pipeline.errors.InputError` (whole file unusable as metadata)
or a :class:`Reject` row naming the trace and the reason (one waveform trace unusable).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import InputError, MissingInputError, SchemaError
from pipeline.io.quakeml import EventRecord, PickRecord, read_quakeml, utc_seconds
from pipeline.io.stationxml import ChannelRecord, read_stationxml


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
    """Read any obspy-readable waveform file into an obspy Stream; InputError if unreadable.

    miniSEED goes straight to obspy's miniSEED reader (the plugin lookup of ``obspy.read``
    costs about a third of a small file's read); any other format through ``obspy.read``.
    """
    import obspy
    from obspy.io.mseed.core import _is_mseed, _read_mseed

    path = _require(Path(path), "waveform file")
    fix = "check the file is a complete miniSEED/SAC/... file obspy can read, or remove it from the glob"
    read = _read_mseed if _is_mseed(str(path)) else obspy.read
    return _obspy_read(read, path, "waveforms", fix)


@dataclass(frozen=True)
class ChannelTrace:
    """The samples of one channel of a waveform file, pieces merged (gaps are masked samples)."""

    id: str  # NET.STA.LOC.CHA
    network: str
    station: str
    location: str
    channel: str
    start_s: float  # epoch seconds of the first sample
    end_s: float  # epoch seconds of the last sample
    start_time: Any  # the same two times as obspy's UTCDateTime (printed in reject details)
    end_time: Any
    sampling_rate: float
    npts: int
    data: np.ndarray  # [npts], a masked array where pieces left gaps

    @property
    def span_text(self) -> str:
        """``"<start> - <end>"`` as obspy prints the two times (formatted only for a reject)."""
        return f"{self.start_time} - {self.end_time}"


def read_channel_traces(path: str | Path) -> tuple[list[ChannelTrace], list[Reject]]:
    """Every channel of one waveform file, its pieces merged, sorted by channel id.

    An unreadable file is one ``unreadable_file`` reject; a channel whose pieces cannot be
    merged (different sampling rates) is a ``sampling_rate_mismatch`` reject.
    """
    path = Path(path)
    name = path.name
    try:
        st = read_waveforms(path)
    except InputError as exc:
        return [], [Reject(f"file:{name}", "unreadable_file", str(exc).splitlines()[0], name)]
    traces: list[ChannelTrace] = []
    rejects: list[Reject] = []
    pieces: dict[str, list[Any]] = {}
    for tr in st:
        pieces.setdefault(tr.id, []).append(tr)
    for sid in sorted(pieces):
        tr = pieces[sid][0]
        if len(pieces[sid]) > 1:  # only a channel in several pieces needs obspy's merge
            sub = type(st)(pieces[sid])
            try:
                sub.merge(method=1, fill_value=None)
            except Exception as exc:
                rejects.append(Reject(sid, "sampling_rate_mismatch", f"cannot merge pieces: {exc}", name))
                continue
            tr = sub[0]
        s = tr.stats
        traces.append(
            ChannelTrace(
                id=tr.id,
                network=s.network,
                station=s.station,
                location=s.location or "",
                channel=s.channel,
                start_s=float(s.starttime.timestamp),
                end_s=float(s.endtime.timestamp),
                start_time=s.starttime,
                end_time=s.endtime,
                sampling_rate=float(s.sampling_rate),
                npts=int(s.npts),
                data=tr.data,
            )
        )
    return traces, rejects


def load_inventory(path: str | Path) -> dict[tuple[str, str, str, str], list[ChannelEpoch]]:
    """Index an inventory by (net, sta, loc, cha): StationXML read lean
    (:mod:`pipeline.io.stationxml`), any other obspy inventory format through obspy."""
    path = _require(Path(path), "inventory")
    records = read_stationxml(path)
    if records is None:
        import obspy

        inv = _obspy_read(obspy.read_inventory, path, "inventory", "pass a valid StationXML file")
        records = [_channel_record(net, sta, cha) for net in inv for sta in net for cha in sta]
    index: dict[tuple[str, str, str, str], list[ChannelEpoch]] = {}
    for r in records:
        index.setdefault((r.network, r.station, r.location, r.channel), []).append(
            ChannelEpoch(
                start=-math.inf if r.start_s is None else r.start_s,
                end=math.inf if r.end_s is None else r.end_s,
                latitude=r.latitude,
                longitude=r.longitude,
                azimuth=r.azimuth,
                dip=r.dip,
                sample_rate=r.sample_rate,
            )
        )
    return index


def _channel_record(net: Any, sta: Any, cha: Any) -> ChannelRecord:
    """What curation takes of an obspy channel (inventory formats other than StationXML)."""

    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    start = cha.start_date or sta.start_date
    end = cha.end_date or sta.end_date
    return ChannelRecord(
        net.code, sta.code, cha.location_code or "", cha.code,
        None if start is None else float(start.timestamp), None if end is None else float(end.timestamp),
        float(cha.latitude), float(cha.longitude),
        number(cha.azimuth), number(cha.dip), number(cha.sample_rate),
    )  # fmt: skip


def _short_id(resource_id: str) -> str:
    tail = resource_id.rstrip("/").replace("=", "/").split("/")[-1]
    return tail or resource_id


def _horizontal_error_km(ev: EventRecord) -> float:
    """The origin's horizontal uncertainty (km): originUncertainty's, else the larger of its
    latitude and longitude uncertainties in km, else NaN."""
    if ev.horizontal_uncertainty_m is not None:
        return ev.horizontal_uncertainty_m / 1000.0
    lat_e, lon_e = ev.latitude_uncertainty_deg, ev.longitude_uncertainty_deg
    if lat_e is not None or lon_e is not None:
        km = 111.19
        a = (lat_e or 0.0) * km
        b = (lon_e or 0.0) * km * math.cos(math.radians(ev.latitude or 0.0))
        return float(max(a, b))
    return float("nan")


def _event_record(ev: Any) -> EventRecord:
    """What curation takes of an obspy Event (catalog formats other than QuakeML 1.2)."""
    origin = ev.preferred_origin() or (ev.origins[0] if ev.origins else None)
    mag = ev.preferred_magnitude() or (ev.magnitudes[0] if ev.magnitudes else None)
    picks = [
        PickRecord(p.phase_hint or "", p.waveform_id.network_code or "", p.waveform_id.station_code or "",
                   float(p.time.timestamp))
        for p in ev.picks
        if p.waveform_id is not None and p.time is not None
    ]  # fmt: skip
    if origin is None:
        return EventRecord(str(ev.resource_id.id), magnitude=None if mag is None else mag.mag, picks=picks)
    ou = origin.origin_uncertainty
    horizontal = None
    if ou is not None:
        horizontal = ou.horizontal_uncertainty
        if horizontal is None:
            horizontal = ou.max_horizontal_uncertainty
    return EventRecord(
        str(ev.resource_id.id),
        origin_time_s=None if origin.time is None else float(origin.time.timestamp),
        latitude=origin.latitude,
        longitude=origin.longitude,
        depth_m=origin.depth,
        magnitude=None if mag is None else mag.mag,
        horizontal_uncertainty_m=horizontal,
        latitude_uncertainty_deg=origin.latitude_errors.uncertainty if origin.latitude_errors else None,
        longitude_uncertainty_deg=origin.longitude_errors.uncertainty if origin.longitude_errors else None,
        picks=picks,
    )


def _event_records(path: Path, what: str, fix: str) -> list[EventRecord]:
    """The events of a catalog: QuakeML 1.2 read lean (:mod:`pipeline.io.quakeml`), any other
    format through obspy."""
    records = read_quakeml(path)
    if records is None:
        import obspy

        records = [_event_record(ev) for ev in _obspy_read(obspy.read_events, path, what, fix)]
    return records


def _read_csv(path: Path, what: str, **kw: Any) -> pd.DataFrame:
    """``pd.read_csv`` with a clear error for an empty, binary or malformed file."""
    head = path.read_bytes()[:4096]
    if b"\x00" in head:
        raise SchemaError(
            f"{what} is a binary file, not a CSV",
            path=path,
            fix=f"give the {what} as a text CSV (or QuakeML)",
        )
    try:
        return pd.read_csv(path, **kw)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SchemaError(
            f"{what} is not a readable CSV ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})",
            path=path,
            fix=f"give the {what} as a text CSV with a header line",
        ) from exc


def _require_numeric(df: pd.DataFrame, col: str, path: Path) -> None:
    """Every non-empty value of ``df[col]`` must be a number; the error names the first bad row."""
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() & df[col].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(
            f"column {col!r} holds a non-numeric value {df[col].iloc[i]!r} at line {i + 2} "
            f"({int(bad.sum())} such rows)",
            path=path,
            fix=f"{col} must be a number on every row (decimal point '.', no units)",
        )


def load_catalog(path: str | Path) -> tuple[pd.DataFrame, list[Reject]]:
    """Events as a table (EVENT_COLUMNS) from QuakeML (any obspy format) or CSV.

    CSV columns: event_id, time (ISO 8601), latitude, longitude, depth_km, magnitude,
    horizontal_error_km. Events without a usable origin are returned as rejects.
    """
    path = _require(Path(path), "event catalog")
    rejects: list[Reject] = []
    if path.suffix.lower() == ".csv":
        df = _read_csv(path, "event catalog")
        missing = [c for c in ("event_id", "time", "latitude", "longitude", "depth_km") if c not in df]
        if missing:
            raise SchemaError(
                f"catalog CSV lacks columns {missing}",
                path=path,
                fix="columns: event_id,time,latitude,longitude,depth_km[,magnitude,horizontal_error_km]",
            )

        for col in ("latitude", "longitude", "depth_km", "magnitude", "horizontal_error_km"):
            if col in df:
                _require_numeric(df, col, path)
        rows = []
        csv_rows: list[Any] = list(df.itertuples(index=False))
        for line, r in enumerate(csv_rows, start=2):
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
                    utc_seconds(str(r.time), path, f"column 'time' at line {line}"),
                    float(r.latitude),
                    float(r.longitude),
                    float(r.depth_km),
                    float(getattr(r, "magnitude", np.nan)),
                    float(getattr(r, "horizontal_error_km", np.nan)),
                )
            )
    else:
        fix = "pass a QuakeML file (or a CSV with event_id,time,latitude,longitude,depth_km,...)"
        rows = []
        for ev in _event_records(path, "event catalog", fix):
            eid = _short_id(ev.public_id)
            if ev.origin_time_s is None or ev.latitude is None or ev.longitude is None:
                rejects.append(Reject(f"event:{eid}", "no_origin", "event has no usable origin", path.name))
                continue
            rows.append(
                (
                    eid,
                    ev.origin_time_s,
                    float(ev.latitude),
                    float(ev.longitude),
                    0.0 if ev.depth_m is None else float(ev.depth_m) / 1000.0,
                    float("nan") if ev.magnitude is None else float(ev.magnitude),
                    _horizontal_error_km(ev),
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

    picks: dict[tuple[str, str, str], float] = {}
    if path.suffix.lower() == ".csv":
        df = _read_csv(path, "picks file", dtype={"network": str, "station": str, "event_id": str})
        missing = [c for c in ("event_id", "network", "station", "phase", "time") if c not in df]
        if missing:
            raise SchemaError(
                f"picks CSV lacks columns {missing}",
                path=path,
                fix="columns: event_id,network,station,phase,time",
            )
        for line, r in enumerate(df.itertuples(index=False), start=2):
            if str(r.phase).upper().startswith("P"):
                key = (str(r.event_id), str(r.network), str(r.station))
                t = utc_seconds(str(r.time), path, f"column 'time' at line {line}")
                picks[key] = min(t, picks.get(key, t))
        return picks
    fix = "pass QuakeML picks, or a CSV with event_id,network,station,phase,time"
    for ev in _event_records(path, "picks", fix):
        eid = _short_id(ev.public_id)
        for p in ev.picks:
            if p.phase_hint.upper().startswith("P"):
                key = (eid, p.network, p.station)
                t = p.time_s
                picks[key] = min(t, picks.get(key, t))
    return picks
