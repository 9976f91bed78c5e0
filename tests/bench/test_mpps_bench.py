"""The MPPS benchmark runs and prints its figures (never asserts a time)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.bench


def test_mpps_bench_quick_prints_figures():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "mpps_bench.py"), "--quick"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in ("C-ECHO (baseline)", "N-CREATE IN PROGRESS", "N-SET COMPLETED"):
        line = next(line for line in lines if line.startswith(name))
        assert re.search(r"median +\d+\.\d+ ms +p95 +\d+\.\d+ ms +IQR +\d+\.\d+ ms +vs C-ECHO +\d+\.\dx",
                         line), line
