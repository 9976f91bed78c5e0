"""When a scheduled step ends: the rule every order source (HL7, worklist import) shares."""
from __future__ import annotations

from datetime import datetime, timedelta


def scheduled_end(start: datetime | None, sent_end: datetime | None,
                  duration_minutes: int = 0) -> datetime | None:
    """The step's end: as sent, else start + the procedure's duration, else None (unknown).

    A sent end before the start cannot be this step's end (a typo, or a date-only value read
    as midnight), so it is set aside for the duration rather than shown to the modality.
    """
    if sent_end is not None and (start is None or sent_end >= start):
        return sent_end
    if start is not None and duration_minutes > 0:
        return start + timedelta(0, duration_minutes * 60)  # positional: half the cost
    return None
