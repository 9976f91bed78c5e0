"""`broker serve` as an operator runs it: a real process, real ports, SIGTERM to stop."""
import os
import signal
import subprocess
import sys
import urllib.request
from datetime import date
from pathlib import Path

from tests.support.dcmtk import findscu
from tests.support.postgres import free_port, wait_for_port


def test_serve_demo_then_sigterm(tmp_path: Path):
    ports = {"HL7": free_port(), "DICOM": free_port(), "WEB": free_port()}
    env = {**os.environ, "BROKER_HL7_PORT": str(ports["HL7"]),
           "BROKER_DICOM_PORT": str(ports["DICOM"]), "BROKER_WEB_PORT": str(ports["WEB"])}
    proc = subprocess.Popen([sys.executable, "-m", "broker", "serve", "--demo"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for port in ports.values():
            wait_for_port(port, timeout=30)
        today = date.today().strftime("%Y%m%d")
        items = findscu(ports["DICOM"], [
            f"ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate={today}",
            "PatientName", "AccessionNumber"])
        assert len(items) == 5
        assert "Müller^Jürgen" in {str(i.PatientName) for i in items}
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['WEB']}/healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert (tmp_path / "broker-data" / "broker.db").is_file()
    for name, port in (("HL7 MLLP", ports["HL7"]), ("DICOM", ports["DICOM"]), ("web", ports["WEB"])):
        assert f"{name} listening on 127.0.0.1:{port}" in output
    assert "stopped" in output.splitlines()[-1]
    assert "Traceback" not in output
    assert "Müller" not in output  # no patient data in the log at INFO


def test_db_upgrade_command(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "broker", "db", "upgrade"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "database at revision" in result.stdout
    assert (tmp_path / "broker-data" / "broker.db").is_file()
