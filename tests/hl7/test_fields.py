"""HL7 TS/DT values read into datetimes and DICOM DA strings."""
from datetime import datetime

import pytest

from broker.hl7.fields import FieldError, parse_date, parse_ts


@pytest.mark.parametrize("value, expected", [
    ("", None),
    ("20261124", datetime(2026, 11, 24)),
    ("2026112409", datetime(2026, 11, 24, 9)),
    ("202611240930", datetime(2026, 11, 24, 9, 30)),
    ("20261124093015", datetime(2026, 11, 24, 9, 30, 15)),
    ("20261124093015.1234+0100", datetime(2026, 11, 24, 9, 30, 15)),
    ("202611240930-0500", datetime(2026, 11, 24, 9, 30)),
    ("2026", datetime(2026, 1, 1)),
    ("202611", datetime(2026, 11, 1)),
    ("20261324", FieldError), ("2026112", FieldError), ("2026-11-24", FieldError),
    ("20261124093", FieldError), ("abcdefgh", FieldError),
    ("202611240930151", FieldError), ("20261124240000", FieldError),
    ("20261124000000", datetime(2026, 11, 24)),
])
def test_parse_ts(value, expected):
    if expected is FieldError:
        with pytest.raises(FieldError, match="OBR-27") as caught:
            parse_ts(value, "OBR-27")
        assert value not in str(caught.value)  # values stay out of error texts (and logs)
    else:
        assert parse_ts(value, "OBR-27") == expected


@pytest.mark.parametrize("value, expected", [
    ("", ""), ("19720304", "19720304"), ("197203041230", "19720304"), ("1972", ""),
    ("197203", ""),
])
def test_parse_date(value, expected):
    assert parse_date(value, "PID-7") == expected
