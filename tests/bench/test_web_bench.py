"""The web bench runs on a small store and prints p50/p95 for every page and API call
(figures are printed, never asserted)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

BENCH = Path(__file__).resolve().parents[2] / "bench" / "web.py"


def test_quick_web_bench_prints_figures(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCH), "--orders", "1500", "--patients", "1500", "--queue", "40",
         "--repeat", "2", "--data", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = re.findall(r"^(.+?)\s+p50\s+\d+\.\d ms  p95\s+\d+\.\d ms", result.stdout, re.M)
    assert {"worklist page, today", "match queue page", "messages page", "API worklist",
            "API matches", "API messages"} <= {name.strip() for name in lines}
    assert list(tmp_path.glob("web-1500-1500-40-r*.db"))  # built once, reused next time
