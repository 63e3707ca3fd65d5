"""StationXML and QuakeML writers of the synthetic seismic network (obspy objects, real formats)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd


def write_inventory(path: Path, stations: pd.DataFrame, network: str, sample_rate: float) -> None:
    """StationXML of the station table (one channel per code, flat 6e8 counts/(m/s) sensitivity)."""
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
                    sample_rate=sample_rate,
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
        networks=[Network(code=network, stations=sta_objs, description="emin-fusion SYNTHETIC network")],
        source="emin-fusion synthetic (pipeline.synthetic.seismic_network)",
        created=UTCDateTime(0),  # not the wall clock: the same seed writes the same bytes
    )
    inv.write(str(path), format="STATIONXML")


def write_quakeml(path: Path, events: pd.DataFrame) -> None:
    """QuakeML of the event table, with origin uncertainties (m) and latitude/longitude errors (deg)."""
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
        mag = Magnitude(
            resource_id=ResourceIdentifier(f"smi:local/emin-synth/magnitude/{e.event_id}"),
            mag=float(e.magnitude),
            magnitude_type="ML",
            origin_id=origin.resource_id,
        )
        ev = Event(
            resource_id=ResourceIdentifier(f"smi:local/emin-synth/event/{e.event_id}"),
            origins=[origin],
            magnitudes=[mag],
            event_type="earthquake",
        )
        ev.preferred_origin_id = origin.resource_id
        ev.preferred_magnitude_id = mag.resource_id
        evs.append(ev)
    Catalog(  # fixed ids (obspy draws random UUIDs): the same seed writes the same bytes
        events=evs,
        resource_id=ResourceIdentifier("smi:local/emin-synth/catalog"),
        description="emin-fusion SYNTHETIC catalog",
    ).write(str(path), format="QUAKEML")
