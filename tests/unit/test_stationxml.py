"""The lean StationXML reader and time parser against obspy: obspy's own test files and built inventories."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import obspy
import pytest
from obspy import UTCDateTime
from obspy.core.inventory import Channel, Inventory, Network, Station
from obspy_files import obspy_test_files

from pipeline.errors import EminWarning, SchemaError
from pipeline.io.quakeml import utc_seconds
from pipeline.io.stationxml import read_stationxml
from pipeline.io.waveforms import _channel_record, load_inventory

OBSPY_STATIONXML = Path(obspy.__file__).parent / "io" / "stationxml" / "tests" / "data"


def _obspy_records(path: Path) -> list[object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inv = obspy.read_inventory(str(path), format="STATIONXML")
    return [_channel_record(n, s, c) for n in inv for s in n for c in s]


def _obspy_files() -> list[Path]:
    """obspy's StationXML test files that obspy itself reads."""
    return obspy_test_files("stationxml", _obspy_records)


@pytest.mark.parametrize("path", _obspy_files(), ids=lambda p: p.name)
def test_lean_reader_equals_obspy_on_obspy_test_files(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EminWarning)
        got = read_stationxml(path)
    if got is None:  # not StationXML 1.x as this reader knows it: obspy reads it instead
        assert path.name in {"no_default_namespace.xml", "version20.xml"}
        return
    assert got == _obspy_records(path)


def test_obspy_files_cover_the_cases_the_reader_handles() -> None:
    files = {f.name for f in _obspy_files()}
    # padded location codes, a channel without coordinates, an empty channel, several epochs
    assert {"stationxml_BK.CMB.__.LKS.xml", "channel_without_coordinates.xml", "empty_channel.xml",
            "full_random_stationxml.xml"} <= files  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EminWarning)
        assert sum(len(read_stationxml(OBSPY_STATIONXML / f) or []) for f in files) >= 20


def test_a_channel_without_coordinates_is_left_out_with_a_warning() -> None:
    with pytest.warns(EminWarning, match="lacks one of latitude"):
        assert read_stationxml(OBSPY_STATIONXML / "channel_without_coordinates.xml") == []


def test_built_inventory_with_epochs_and_station_dates(tmp_path: Path) -> None:
    t0, t1 = UTCDateTime("2020-01-01T00:00:00.25Z"), UTCDateTime("2022-06-30T12:00:00Z")
    chans = [
        Channel("HHZ", "00", 40.5, -111.25, 1500.0, 0.0, azimuth=0.0, dip=-90.0, sample_rate=100.0,
                start_date=t0, end_date=t1),
        Channel("HHZ", "00", 40.5, -111.25, 1500.0, 0.0, azimuth=0.0, dip=-90.0, sample_rate=200.0,
                start_date=t1),
        Channel("EHN", "", 40.6, -111.2, 1500.0, 5.0, azimuth=91.5, dip=0.0),
    ]  # fmt: skip
    sta = Station("ST1", 40.5, -111.25, 1500.0, channels=chans, start_date=t0)
    path = tmp_path / "inv.xml"
    Inventory([Network("UU", stations=[sta])], source="test").write(str(path), format="STATIONXML")
    assert read_stationxml(path) == _obspy_records(path)
    index = load_inventory(path)
    first, second = index[("UU", "ST1", "00", "HHZ")]
    assert (first.start, first.end, first.sample_rate) == (t0.timestamp, t1.timestamp, 100.0)
    assert (second.start, second.end, second.sample_rate) == (t1.timestamp, np.inf, 200.0)
    (ehn,) = index[("UU", "ST1", "", "EHN")]
    assert (ehn.start, ehn.azimuth, ehn.sample_rate) == (t0.timestamp, 91.5, None)  # the station's start


def test_bad_values_name_the_channel(tmp_path: Path) -> None:
    sta = Station("ST1", 40.5, -111.25, 1500.0, channels=[Channel("HHZ", "", 40.5, -111.25, 1500.0, 0.0)])
    path = tmp_path / "inv.xml"
    Inventory([Network("UU", stations=[sta])], source="test").write(str(path), format="STATIONXML")
    text = path.read_text()
    (tmp_path / "lat.xml").write_text(text.replace(">40.5</Latitude>", ">forty</Latitude>", 2))
    with pytest.raises(SchemaError, match=r"channel UU\.ST1\.\.HHZ: Latitude is not a number: 'forty'"):
        read_stationxml(tmp_path / "lat.xml")
    (tmp_path / "time.xml").write_text(text.replace('code="HHZ"', 'code="HHZ" startDate="yesterday"'))
    with pytest.raises(SchemaError, match=r"channel UU\.ST1\.\.HHZ: startDate is not a time"):
        load_inventory(tmp_path / "time.xml")


def test_not_stationxml_goes_to_obspy(tmp_path: Path) -> None:
    (tmp_path / "x.xml").write_text("<quakeml/>")
    assert read_stationxml(tmp_path / "x.xml") is None
    (tmp_path / "y.txt").write_text("not xml at all")
    assert read_stationxml(tmp_path / "y.txt") is None


def test_utc_seconds_is_obspys_float_to_the_bit() -> None:
    rng = np.random.default_rng(7)
    for i in range(3000):
        t = UTCDateTime(ns=int(rng.integers(-2 * 10**15, 4 * 10**15)) * 1000)
        digits = i % 7
        frac = f"{t.microsecond:06d}"[:digits]
        text = t.strftime("%Y-%m-%dT%H:%M:%S") + ("." + frac if digits else "") + ("Z" if i % 2 else "")
        assert utc_seconds(text, Path("f"), "w") == UTCDateTime(text).timestamp, text


@pytest.mark.parametrize(
    "text",
    ["2021-03-04T05:06:07.8912345Z", "2021-03-04T07:06:07+02:00", "20210304T050607", "2021-03-04",
     "2021-03-04 05:06:07"],
)  # fmt: skip
def test_other_time_shapes_are_obspys(text: str) -> None:
    assert utc_seconds(text, Path("f"), "w") == UTCDateTime(text).timestamp


def test_a_bad_time_is_a_schema_error_naming_where() -> None:
    with pytest.raises(SchemaError, match="line 3 is not a time: '2021-02-30T00:00:00Z'"):
        utc_seconds("2021-02-30T00:00:00Z", Path("f"), "line 3")
