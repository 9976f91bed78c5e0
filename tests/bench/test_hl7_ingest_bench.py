"""bench/hl7_ingest.py --quick runs against `broker serve` and prints its figures; only that it
finished, printed them and saw no wrong ACK or row is asserted, never a time."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "hl7_ingest.py"
RATE = r"median +\d+ msg/s  IQR \d+-\d+"

pytestmark = pytest.mark.bench


def run_quick(*args: str) -> str:
    """The bench's output, after checking it exited cleanly."""
    result = subprocess.run([sys.executable, str(BENCH), "--quick", *args],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "errors: 0" in result.stdout
    assert "NOT exactly once" not in result.stdout
    return result.stdout


def test_quick_sqlite_loads_print_rates_ratios_and_latencies():
    out = run_quick()
    for load in ("known patients", "new patients", "100 look-alikes"):
        assert re.search(rf"{load} +broker +{RATE}", out)
        assert re.search(rf"{load} +baseline +{RATE}", out)
        assert re.search(rf"{load} +ratio broker/baseline \d+\.\d+", out)
        assert f"{load} database: every message and order exactly once" in out
    for series in ("baseline", "broker, known patients", "broker, new patients"):
        assert re.search(rf"ACK latency at 50 msg/s, {series} +p50 +\d+\.\d+ ms  p99 +\d+\.\d+ ms"
                         rf"  max +\d+\.\d+ ms", out)


@pytest.mark.postgres
def test_quick_postgres_load_prints_one_and_two_processes():
    out = run_quick("--loads", "postgres")
    assert re.search(rf"PostgreSQL known patients, one process +{RATE}", out)
    assert re.search(rf"PostgreSQL known patients, two processes +{RATE}", out)
    assert re.search(r"PostgreSQL ratio two/one \d+\.\d+", out)
    assert "PostgreSQL, one process, database: every message and order exactly once" in out
    assert "PostgreSQL, two processes, database: every message and order exactly once" in out
