"""Time and UID sources, injected where results must be exact in tests."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone


def utcnow() -> datetime:
    """Naive UTC now: what record-keeping timestamps in the store hold."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


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
