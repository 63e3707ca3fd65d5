"""A lean StationXML reader: the few values curation takes from an inventory, straight from the XML.

obspy's reader builds its whole inventory model, responses included (about 1.2 ms per station:
0.24 s of a 200-station network, 1.18 s of the 1500-station Utah-scale one against 0.21 s here,
all of it serial, before the first waveform can be cut); curation needs each channel epoch's time span, coordinates, orientation and sample
rate. This module reads those with lxml and hands them on as :class:`ChannelRecord`;
:func:`pipeline.io.waveforms.load_inventory` turns records into its index (and builds the same
records from obspy's model for every other inventory format), so both routes share one set of
rules. The tests check it against obspy's reader on obspy's own StationXML test files.

A file that is not FDSN StationXML 1.x (another root element, or not XML at all) gives
``None``: the caller then uses obspy, which reads the other formats or names the problem.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from pipeline.errors import EminWarning, SchemaError
from pipeline.io.quakeml import utc_seconds

#: The root element of an FDSN StationXML 1.x file.
STATIONXML_ROOT = re.compile(r"^\{http://www\.fdsn\.org/xml/station/1\}FDSNStationXML$")


@dataclass(frozen=True)
class ChannelRecord:
    """One channel epoch as curation takes it: codes (stripped, as obspy strips them), its time
    span (the station's where the channel gives none; ``None`` where neither does), coordinates,
    orientation and sample rate."""

    network: str
    station: str
    location: str
    channel: str
    start_s: float | None  # POSIX seconds
    end_s: float | None
    latitude: float
    longitude: float
    azimuth: float | None
    dip: float | None
    sample_rate: float | None


def read_stationxml(path: Path) -> list[ChannelRecord] | None:
    """The channel epochs of a StationXML file, in file order, or ``None`` when ``path`` is not one.

    As obspy does, an empty ``<Channel/>`` is skipped and a channel without its latitude,
    longitude, elevation and depth is left out with a warning naming it (its traces are then
    rejects for want of metadata). Raises :class:`~pipeline.errors.SchemaError` naming the
    channel for a value that is not a number or a time (obspy would drop it with a warning).
    """
    try:
        root = etree.parse(str(path)).getroot()
    except (etree.XMLSyntaxError, OSError):
        return None
    if not STATIONXML_ROOT.match(str(root.tag)):
        return None
    ns = etree.QName(root).namespace
    records = []
    for net in root.iterfind(f"{{{ns}}}Network"):
        for sta in net.iterfind(f"{{{ns}}}Station"):
            codes = (net.get("code", "").strip(), sta.get("code", "").strip())
            s = _Values(ns, path, f"station {'.'.join(codes)}")
            span = (s.time(sta, "startDate"), s.time(sta, "endDate"))
            for cha in sta.iterfind(f"{{{ns}}}Channel"):
                if not cha.attrib and not len(cha):
                    continue
                loc, code = cha.get("locationCode", "").strip(), cha.get("code", "").strip()
                c = _Values(ns, path, f"channel {'.'.join((*codes, loc, code))}")
                lat, lon, elevation, depth = (
                    c.number(cha, n) for n in ("Latitude", "Longitude", "Elevation", "Depth")
                )
                if lat is None or lon is None or elevation is None or depth is None:
                    warnings.warn(
                        f"{path}: {c.where} lacks one of latitude, longitude, elevation and depth; "
                        "it is left out (as obspy leaves it out), so its traces are rejected",
                        EminWarning,
                        stacklevel=2,
                    )
                    continue
                start, end = (
                    v if v is not None else w
                    for v, w in zip((c.time(cha, "startDate"), c.time(cha, "endDate")), span, strict=True)
                )
                records.append(
                    ChannelRecord(*codes, loc, code, start, end, lat, lon,
                                  c.number(cha, "Azimuth"), c.number(cha, "Dip"), c.number(cha, "SampleRate"))
                )  # fmt: skip
    return records


@dataclass(frozen=True)
class _Values:
    """Values of one element in the StationXML namespace, with errors naming the file and the element."""

    ns: str | None
    path: Path
    where: str

    def number(self, el: etree._Element, name: str) -> float | None:
        """The number in child ``name`` (``None`` when absent, empty or NaN, as obspy reads it)."""
        child = el.find(f"{{{self.ns}}}{name}")
        text = child.text.strip() if child is not None and child.text else ""
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise SchemaError(
                f"{self.where}: {name} is not a number: {text!r}",
                path=self.path,
                fix="give StationXML values as plain decimal numbers",
            ) from None
        return None if math.isnan(value) else value

    def time(self, el: etree._Element, attribute: str) -> float | None:
        """The time in ``attribute`` as POSIX seconds (``None`` when absent)."""
        text = (el.get(attribute) or "").strip()
        return utc_seconds(text, self.path, f"{self.where}: {attribute}") if text else None
