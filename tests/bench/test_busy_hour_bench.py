"""bench/busy_hour.py runs its mix against `broker serve` and prints its figures (never a time)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.bench
ROW = re.compile(r"^(?P<op>\S.*?)\s{2,}(?P<phase>idle|loaded)\s+\d+\s+(\d+\.\d|-)")


def test_busy_hour_quick_prints_figures_per_operation_and_phase():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "busy_hour.py"), "--quick"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {(m["op"], m["phase"]) for m in map(ROW.match, result.stdout.splitlines()) if m}
    for op in ("HL7 order ACK", "MWL C-FIND (station, today)", "MPPS N-CREATE"):
        for phase in ("idle", "loaded"):
            assert (op, phase) in rows, result.stdout
    assert "target HL7 ACK p99 under load <= 50 ms" in result.stdout
