"""The notification benchmark runs and prints its figures (never asserts a time)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.bench


def test_notify_bench_quick_prints_figures():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "notify.py"), "--quick"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(re.match(r"trigger ian +-> EHR ACK +p50 +\d+\.\d ms +p95 +\d+\.\d ms", line)
               for line in lines), lines
    assert any(re.match(r"drain 500 notifications, 2 rounds +bare MLLP loop median +\d+ msg/s "
                        r"+broker median +\d+ msg/s +ratio median \d+\.\d\d "
                        r"\(min \d+\.\d\d, max \d+\.\d\d\)", line) for line in lines), lines
