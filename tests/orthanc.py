"""Orthanc as the PACS in the tests: Debian's /usr/sbin/Orthanc with its DICOMweb plugin, run with
its own configuration, storage folder and free ports, and stopped (only this process) afterwards.

What it stored is read back through its REST API: /instances, /instances/{id}/simplified-tags,
/instances/{id}/file, /studies/{id}.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AE_TITLE = "ORTHANC"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def installed() -> bool:
    return ORTHANC.exists() and DICOMWEB_PLUGIN.exists()


@dataclass
class Orthanc:
    """A running Orthanc: its REST root, DICOMweb root and DICOM address."""

    url: str
    dicom_port: int
    log: Path

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def destination(self) -> str:
        """Its DICOM address as SKINSCREEN_DICOM_DESTINATION takes it."""
        return f"{AE_TITLE}@127.0.0.1:{self.dicom_port}"

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=60)
        response.raise_for_status()
        return response.json() if "json" in response.headers.get("content-type", "") else response.content

    def upload(self, path: Path) -> dict[str, Any]:
        """Store a file through the REST API (POST /instances): its Orthanc ids."""
        response = httpx.post(f"{self.url}/instances", content=path.read_bytes(), timeout=60)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def instances(self) -> list[dict[str, Any]]:
        """Every stored instance: its Orthanc id, parent study id and simplified tags."""
        out = []
        for instance_id in self.get("/instances"):
            tags = self.get(f"/instances/{instance_id}/simplified-tags")
            series = self.get(f"/instances/{instance_id}/series")
            out.append({"id": instance_id, "study": series["ParentStudy"], "tags": tags})
        return out

    def file(self, instance_id: str, dst: Path) -> Path:
        dst.write_bytes(self.get(f"/instances/{instance_id}/file"))
        return dst


def _config(folder: Path, http_port: int, dicom_port: int) -> dict[str, Any]:
    return {
        "Name": "skinscreen-test-pacs",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": AE_TITLE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpThreadsCount": 4,
        "ConcurrentJobs": 1,
        "StableAge": 1,
    }


@contextlib.contextmanager
def running_orthanc(folder: Path, *, timeout: float = 60) -> Iterator[Orthanc]:
    """Start Orthanc with storage under `folder`; RuntimeError when it does not answer in time."""
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = folder / "orthanc.json"
    config.write_text(json.dumps(_config(folder, http_port, dicom_port), indent=2))
    log = folder / "orthanc.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(ORTHANC), str(config)], stdout=out, stderr=subprocess.STDOUT)
    orthanc = Orthanc(url=f"http://127.0.0.1:{http_port}", dicom_port=dicom_port, log=log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({process.returncode}): {log.read_text()[-2000:]}")
            try:
                plugins = orthanc.get("/plugins")
                if "dicom-web" in plugins:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s")
            time.sleep(0.2)
        yield orthanc
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
