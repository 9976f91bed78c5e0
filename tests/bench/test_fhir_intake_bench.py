"""The FHIR intake benchmark runs against sekmet-fhir and prints its figures (never asserts a time)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.bench


def test_fhir_intake_bench_quick_prints_figures():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "fhir_intake.py"), "--quick"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    for mode in ("rest-hook", "backport"):
        line = next(line for line in lines if line.startswith(f"latency {mode}"))
        assert re.search(r"p50 +\d+\.\d ms +p95 +\d+\.\d ms", line), line
    line = next(line for line in lines if line.startswith("catch-up"))
    assert re.search(r"100 orders created .* stored \d+\.\d s after restart .* findscu serves 100",
                     line), line
