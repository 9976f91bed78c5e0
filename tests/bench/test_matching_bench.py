"""The matching bench runs and prints its figures (never asserts a time)."""
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "matching.py"


def test_quick_bench_prints_quality_and_speed_figures(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--people", "300", "--population", "2000",
         "--probes", "16", "--data", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"precision \d\.\d{4}  recall \d\.\d{4}  F1 \d\.\d{4}", out)
    assert re.search(r"wrong automatic links \d+", out)
    assert re.search(r"median \d+\.\d+ ms  p95 \d+\.\d+ ms", out)
    assert re.search(r"true match among candidates: \d+/16", out)
    assert re.search(r"indexed search against 2000 is \d+\.\dx faster", out)
    assert (tmp_path / "search-2000.db").is_file()  # built once, reused next time
