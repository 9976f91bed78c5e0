"""Orthanc (Debian `orthanc`, `orthanc-dicomweb`) as the PACS, and DCMTK storescu to fill it."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

ORTHANC = "/usr/sbin/Orthanc"
STORESCU = "/usr/bin/storescu"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available() -> bool:
    return Path(ORTHANC).exists()


class Orthanc:
    """One Orthanc on free ports with its own storage; `modalities` may C-FIND it."""

    def __init__(self, folder: Path, modalities: dict[str, int], lua: str = "",
                 env: dict[str, str] | None = None, aet: str = "ORTHANC") -> None:
        self.folder, self.aet = folder, aet
        self.dicom_port, self.http_port = free_port(), free_port()
        config = {
            "Name": "broker-test-pacs", "StorageDirectory": str(folder / "db"),
            "IndexDirectory": str(folder / "db"), "DicomAet": aet,
            "DicomPort": self.dicom_port, "HttpPort": self.http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True, "StableAge": 1, "ConcurrentJobs": 1,
            # Orthanc refuses C-FIND from AE titles it does not know.
            "DicomModalities": {title.lower(): [title, "127.0.0.1", port]
                                for title, port in modalities.items()},
            "Plugins": [DICOMWEB_PLUGIN] if Path(DICOMWEB_PLUGIN).exists() else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        folder.mkdir(parents=True, exist_ok=True)
        if lua:
            script = folder / "script.lua"
            script.write_text(lua)
            config["LuaScripts"] = [str(script)]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
        self._log = open(folder / "orthanc.log", "wb")
        self.process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")],
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(env or {})})
        self._wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/system", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("Orthanc did not start")

    def store(self, files: list[Path], calling: str = "STORESCU") -> None:
        """Send the files with DCMTK storescu; checks that Orthanc accepted them."""
        result = subprocess.run([STORESCU, "-aet", calling, "-aec", self.aet, "127.0.0.1",
                                 str(self.dicom_port), *map(str, files)],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0 or "Failed" in result.stderr:
            raise AssertionError(f"storescu failed: {result.stderr}")

    def instance_count(self) -> int:
        with urllib.request.urlopen(f"{self.url}/statistics", timeout=10) as response:
            return int(json.loads(response.read())["CountInstances"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def write_instances(folder: Path, study_uid: str, modification: Dataset, patient_id: str,
                    accession: str, skip: int = 0) -> list[Path]:
    """One small CT image file per instance the MPPS N-SET referenced (minus the last `skip`)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    refs = [(series.SeriesInstanceUID, ref.ReferencedSOPInstanceUID)
            for series in modification.PerformedSeriesSequence
            for ref in series.ReferencedImageSequence]
    for number, (series_uid, sop_uid) in enumerate(refs[:len(refs) - skip], 1):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CT_IMAGE, sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE, sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.PatientID, ds.PatientName, ds.AccessionNumber = patient_id, "Test^Patient", accession
        ds.Modality, ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "CT", "20261124", 1, number
        ds.Rows = ds.Columns = 2
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelData = b"\0" * 8
        path = folder / f"{sop_uid}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def scratch(prefix: str = "orthanc-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
