"""UPS readings and the upsmon events their changes raise."""

import pytest

from motte.power import UpsReading, status_events


def r(status, **numbers):
    return UpsReading(tuple(status.split()), **numbers)


@pytest.mark.parametrize(
    ("before", "after", "events"),
    [
        (None, "OL", []),
        (None, "OB DISCHRG", ["ONBATT"]),
        ("OL", "OB", ["ONBATT"]),
        ("OB", "OL CHRG", ["ONLINE"]),
        ("OL", "OL CHRG", []),  # ONLINE only after being on battery
        ("OB", "OB LB", ["LOWBATT"]),
        ("OB LB", "FSD OB LB", ["FSD"]),
        ("OL", "OL RB", ["REPLBATT"]),
        ("OL", "OB LB RB", ["ONBATT", "LOWBATT", "REPLBATT"]),
        ("OL", "WAIT", []),  # upsd reconnecting to its driver: nothing to say
        ("WAIT", "OB", ["ONBATT"]),
        ("OL", "OL ECO TRIM CAL", []),  # unknown and other tokens are accepted, ignored
        ("OL", "OL BYPASS", ["BYPASS"]),
        ("OL BYPASS", "OL", ["NOTBYPASS"]),
        ("OL", "OFF", ["OFF"]),
        ("OFF", "OL", ["NOTOFF"]),
        ("OL", "OL OVER ALARM", ["OVER", "ALARM"]),
        ("OL OVER ALARM", "OL", ["NOTOVER", "NOTALARM"]),
    ],
)
def test_status_changes_raise_upsmons_events(before, after, events):
    assert status_events(r(before) if before else None, r(after)) == events


def test_readings_from_variables_tolerate_odd_numbers():
    reading = UpsReading.from_variables(
        {
            "ups.status": "OB  DISCHRG",
            "battery.charge": "87.5",
            "battery.runtime": "nan",
            "ups.load": "n/a",
        }
    )
    assert reading.status == ("OB", "DISCHRG")
    assert (reading.charge, reading.runtime, reading.load) == (87.5, None, None)
    assert reading.on_battery and not reading.on_line and not reading.critical
    assert r("FSD OL").critical and r("OB LB").critical and not r("OL LB").critical
    assert r("").waiting and r("WAIT").waiting
    assert reading.describe() == "OB DISCHRG, charge 87.5%"
