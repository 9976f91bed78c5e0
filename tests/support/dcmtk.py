"""DCMTK as the real worklist client (Debian package dcmtk, never the venv's pynetdicom findscu)."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

FINDSCU = "/usr/bin/findscu"
ECHOSCU = "/usr/bin/echoscu"


def findscu(port: int, keys: list[str], called: str = "BROKER", calling: str = "FINDSCU",
            extra: list[str] | None = None) -> list[Dataset]:
    """Run `findscu -W` with `-k` keys; returns the pending responses read back with pydicom."""
    with tempfile.TemporaryDirectory() as out:
        args = [FINDSCU, "-W", "-X", "-od", out, "-aet", calling, "-aec", called]
        for key in keys:
            args += ["-k", key]
        args += (extra or []) + ["127.0.0.1", str(port)]
        result = subprocess.run(args, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"findscu failed ({result.returncode}): {result.stderr}")
        return [dcmread(p) for p in sorted(Path(out).glob("rsp*.dcm"))]


def echoscu(port: int, called: str = "BROKER", calling: str = "ECHOSCU") -> subprocess.CompletedProcess:
    """Run `echoscu`; the caller checks returncode."""
    return subprocess.run([ECHOSCU, "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=60)
