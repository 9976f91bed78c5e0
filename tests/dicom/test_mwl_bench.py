"""bench/mwl_query.py --quick runs end to end and prints its figures (never a timed assertion)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench
BENCH = Path(__file__).resolve().parents[2] / "bench" / "mwl_query.py"


def test_quick_bench_prints_latency_ratio_growth_memory_and_quickack():
    result = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    shapes = ["today+modality", "today+station", "name wildcard", "3 days+station"]
    for shape in shapes:
        rows = re.findall(rf"^\s+{re.escape(shape)}\s+(\d+)\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+ ms"
                          rf"\s+[\d.]+ ms\s+([\d.]+)x", out, re.M)
        assert len(rows) == 2, out  # both sizes measured against wlmscpfs
        assert all(int(answers) > 0 for answers, _ in rows)
        assert re.search(rf"^\s+{re.escape(shape)}\s+[\d.]+x$", out, re.M)  # growth line
    assert len(re.findall(r"broker RSS \d+ MB", out)) == 2
    assert all(f"plan {shape}:" in out for shape in shapes)  # the query plans were printed
    assert "wlmscpfs answered" not in out  # both servers gave the same number of answers
    for client in ("findscu", "findscu TCP_NODELAY=1"):  # TCP_QUICKACK on and off, same run
        assert re.search(rf"^\s+{re.escape(client)}\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+x$", out, re.M)
