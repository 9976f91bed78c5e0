"""`broker serve` as a separate process on free ports, configured by environment variables."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.postgres import free_port, wait_for_port


class ServeProcess:
    """One `broker serve`; `hl7_port` and `dicom_port` are known before it starts."""

    def __init__(self, data: Path, database_url: str, env: dict[str, str]) -> None:
        self.hl7_port, self.dicom_port = free_port(), free_port()
        data.mkdir(parents=True, exist_ok=True)
        self._log = open(data / f"serve-{self.hl7_port}.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broker", "serve"],
            env={**os.environ, "BROKER_DATA_DIR": str(data), "BROKER_DATABASE_URL": database_url,
                 "BROKER_HL7_PORT": str(self.hl7_port), "BROKER_DICOM_PORT": str(self.dicom_port),
                 "BROKER_WEB_ENABLED": "false", **env},
            stdout=self._log, stderr=subprocess.STDOUT)
        wait_for_port(self.dicom_port, timeout=60)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a power cut."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
