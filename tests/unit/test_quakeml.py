"""The lean QuakeML reader against obspy's reader: obspy's own test files and a built catalog."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import obspy
import pytest
from obspy import UTCDateTime
from obspy.core.event import (
    Catalog,
    Event,
    Magnitude,
    Origin,
    OriginUncertainty,
    Pick,
    QuantityError,
    ResourceIdentifier,
    WaveformStreamID,
)
from obspy_files import obspy_test_files

from pipeline.errors import InputError, SchemaError
from pipeline.io.quakeml import read_quakeml
from pipeline.io.waveforms import _event_record, load_catalog, load_picks

OBSPY_QUAKEML = Path(obspy.__file__).parent / "io" / "quakeml" / "tests" / "data"
T0 = UTCDateTime("2024-03-04T05:06:07.891234Z")


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN, floats to 1e-9 relative (obspy keeps some values as its own float types)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _obspy_files() -> list[Path]:
    """obspy's QuakeML test files that obspy itself reads."""
    return obspy_test_files("quakeml", lambda f: obspy.read_events(f, format="QUAKEML"))


@pytest.mark.parametrize("path", _obspy_files(), ids=lambda p: p.name)
def test_lean_reader_equals_obspy_on_obspy_test_files(path: Path) -> None:
    """Every value curation takes (origin, magnitude, uncertainties, picks) equals obspy's.

    obspy drops an event whose ``type`` is not a QuakeML enum value (usgs_event.xml has a
    "quarry"); the lean reader keeps it, as its origin is fine and the type is not used.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            r.public_id: asdict(r) for r in map(_event_record, obspy.read_events(str(path), "QUAKEML"))
        }
    got = read_quakeml(path)
    assert got is not None, f"{path.name} was not recognised as QuakeML"
    by_id = {r.public_id: asdict(r) for r in got}
    assert len(by_id) == len(got) and expected.keys() <= by_id.keys()
    for public_id, e in expected.items():
        assert _same(by_id[public_id], e), (by_id[public_id], e)
    assert len(by_id) - len(expected) == path.read_text().count("<type>quarry</type>")


def test_obspy_test_files_cover_the_fields() -> None:
    """The comparison above is not vacuous: the files hold origins, uncertainties and picks."""
    records = [r for f in _obspy_files() for r in read_quakeml(f) or []]
    assert sum(r.origin_time_s is not None for r in records) >= 5
    assert any(r.horizontal_uncertainty_m is not None for r in records)
    assert any(r.latitude_uncertainty_deg is not None for r in records)
    assert sum(len(r.picks) for r in records) >= 3
    assert any(r.magnitude is not None for r in records)


def _catalog(tmp_path: Path) -> Path:
    """Events that exercise the rules: preferred origin not first, errors only in lat/lon,
    max-horizontal uncertainty, no origin at all, no magnitude, picks of several phases."""
    t0 = T0
    first = Origin(time=t0 + 1, latitude=1.0, longitude=2.0, depth=3000.0)
    second = Origin(
        time=t0, latitude=37.5, longitude=-112.25, depth=5000.0,
        origin_uncertainty=OriginUncertainty(max_horizontal_uncertainty=1250.0),
    )  # fmt: skip
    mags = [Magnitude(mag=1.0), Magnitude(mag=2.5)]
    ev_a = Event(
        resource_id=ResourceIdentifier("smi:test/event/a"),
        origins=[first, second],
        magnitudes=mags,
        preferred_origin_id=second.resource_id,
        preferred_magnitude_id=mags[1].resource_id,
        picks=[
            Pick(time=t0 + 10.5, phase_hint="P", waveform_id=WaveformStreamID("UU", "STA1")),
            Pick(time=t0 + 10.2, phase_hint="Pn", waveform_id=WaveformStreamID("UU", "STA1")),
            Pick(time=t0 + 18.0, phase_hint="S", waveform_id=WaveformStreamID("UU", "STA1")),
            Pick(time=t0 + 12.0, phase_hint="P", waveform_id=WaveformStreamID("UU", "STA2")),
        ],
    )
    ev_b = Event(
        resource_id=ResourceIdentifier("smi:test/event/b"),
        origins=[
            Origin(
                time=t0 + 3600,
                latitude=40.0,
                longitude=-111.0,
                latitude_errors=QuantityError(uncertainty=0.01),
                longitude_errors=QuantityError(uncertainty=0.02),
            )
        ],
    )
    ev_c = Event(resource_id=ResourceIdentifier("smi:test/event/c"), magnitudes=[Magnitude(mag=3.0)])
    path = tmp_path / "events.xml"
    Catalog(events=[ev_a, ev_b, ev_c]).write(str(path), format="QUAKEML")
    return path


def test_catalog_and_picks_from_quakeml_match_a_hand_computed_table(tmp_path: Path) -> None:
    path = _catalog(tmp_path)
    t0 = T0.timestamp
    events, rejects = load_catalog(path)
    assert events["event_id"].tolist() == ["a", "b"]
    a, b = events.iloc[0], events.iloc[1]
    assert (a.time_s, a.latitude, a.longitude, a.depth_km, a.magnitude) == (t0, 37.5, -112.25, 5.0, 2.5)
    assert a.horizontal_error_km == 1.25
    assert b.time_s == t0 + 3600 and b.depth_km == 0.0 and math.isnan(b.magnitude)
    assert b.horizontal_error_km == pytest.approx(
        max(0.01 * 111.19, 0.02 * 111.19 * math.cos(math.radians(40)))
    )
    assert [(r.trace_id, r.reason) for r in rejects] == [("event:c", "no_origin")]
    picks = load_picks(path, events)
    assert picks == {("a", "UU", "STA1"): (T0 + 10.2).timestamp, ("a", "UU", "STA2"): (T0 + 12.0).timestamp}


def test_a_value_that_is_not_a_number_names_the_event(tmp_path: Path) -> None:
    path = _catalog(tmp_path)
    path.write_text(path.read_text().replace("<value>37.5</value>", "<value>37.5N</value>"))
    with pytest.raises(SchemaError, match=r"event smi:test/event/a: latitude/value is not a number: '37.5N'"):
        load_catalog(path)


def test_not_quakeml_goes_to_obspy_which_names_the_file(tmp_path: Path) -> None:
    """Another XML root is not read lean: obspy tries it, and its failure is an InputError."""
    bad = tmp_path / "events.xml"
    bad.write_text("<catalog><event/></catalog>")
    assert read_quakeml(bad) is None
    with pytest.raises(InputError, match="cannot read event catalog"):
        load_catalog(bad)
