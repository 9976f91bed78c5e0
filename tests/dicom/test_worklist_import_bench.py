"""bench/worklist_import.py --quick runs end to end and prints its figures (never a timed assertion)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench
BENCH = Path(__file__).resolve().parents[2] / "bench" / "worklist_import.py"


def test_quick_bench_prints_rate_median_spread_and_the_baseline_ratio():
    result = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for label in ("broker worklist import", "dcmread baseline"):
        assert re.search(rf"^\s+{label}\s+\d+ files/s\s+median\s+[\d.]+ s\s+spread\s+[\d.]+-\s*[\d.]+ s$",
                         out, re.M), out
    assert re.search(r"^\s+import / baseline\s+[\d.]+x$", out, re.M), out
