"""Time and UID sources, injected where results must be exact in tests."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta

_EPOCH = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Naive UTC now: what record-keeping timestamps in the store hold."""
    # The epoch plus the clock's microseconds: half the cost of now(utc).replace(tzinfo=None),
    # and every stored HL7 message asks three times.
    return _EPOCH + timedelta(0, 0, time.time_ns() // 1000)


def local_now() -> datetime:
    """Naive local now: scheduled start times are the site's local time, as DICOM DA/TM are."""
    return datetime.now()


def uid_factory(root: str):
    """A function returning new UIDs under `root` (at most 64 characters, PS3.5 9.1)."""
    root = root if root.endswith(".") else root + "."

    def new_uid() -> str:
        suffix = str(uuid.uuid4().int)
        return (root + suffix)[:64].rstrip(".")
    return new_uid
