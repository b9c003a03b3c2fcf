"""Orthanc as the PACS: started per test with its own storage and ports; skipped locally when it is
not installed or does not start, a failure in CI (.ci/install-extra installs it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import service_unavailable
from tests.orthanc import Orthanc, installed, running_orthanc


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    if not installed():
        service_unavailable("Orthanc", FileNotFoundError("/usr/sbin/Orthanc or its DICOMweb plugin"))
    with contextlib.ExitStack() as stack:
        try:
            pacs = stack.enter_context(running_orthanc(tmp_path / "orthanc"))
        except RuntimeError as exc:
            service_unavailable("Orthanc", exc)
        yield pacs
