"""bench/hl7_ingest.py --quick runs and prints its figures (never a timed assertion)."""
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "hl7_ingest.py"


def test_hl7_ingest_bench_quick_prints_figures():
    result = subprocess.run([sys.executable, str(BENCH), "--quick", "--messages", "80"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for label in ("baseline 1 conn", "broker 1 conn", "baseline 4 conn", "broker 4 conn",
                  "ratio broker/baseline, 1 conn", "ratio broker/baseline, 4 conn"):
        assert label in result.stdout
    assert "msg/s" in result.stdout and "IQR" in result.stdout
    assert "broker 4 conn cpu/msg" in result.stdout and "baseline 4 conn cpu/msg" in result.stdout
