"""The scheduled end of a step: sent end, else start + duration, else unknown."""
from datetime import datetime

import pytest

from broker.domain.schedule import scheduled_end

START = datetime(2026, 11, 24, 9, 0)


@pytest.mark.parametrize("start, sent, minutes, expected", [
    (START, None, 15, datetime(2026, 11, 24, 9, 15)),                       # duration
    (datetime(2026, 11, 24, 23, 50), None, 20, datetime(2026, 11, 25, 0, 10)),  # past midnight
    (START, datetime(2026, 11, 24, 10, 30), 15, datetime(2026, 11, 24, 10, 30)),  # sent wins
    (START, START, 15, START),                                               # same instant: kept
    (START, datetime(2026, 11, 24, 0, 0), 15, datetime(2026, 11, 24, 9, 15)),  # before start
    (START, datetime(2026, 11, 24, 0, 0), 0, None),
    (START, None, 0, None),                                                  # no duration known
    (None, None, 15, None),                                                  # no start
    (None, datetime(2026, 11, 24, 10, 0), 0, datetime(2026, 11, 24, 10, 0)),  # sent, no start
])
def test_scheduled_end(start, sent, minutes, expected):
    assert scheduled_end(start, sent, minutes) == expected
