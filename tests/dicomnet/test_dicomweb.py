"""DICOMweb both ways, over real HTTP: `skinscreen serve`'s app under uvicorn takes STOW-RS from a
sender account (dicomweb-client and hand-made requests), and results go out with STOW-RS to Orthanc's
DICOMweb and to skinscreen's own endpoint, whose PS3.18 answers decide each export's state."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
import requests
import uvicorn
from click.testing import CliRunner
from dicomweb_client.api import DICOMwebClient
from pydantic import SecretStr
from sqlalchemy import select

from skinscreen.cli import cli
from skinscreen.config import Settings
from skinscreen.db import migrate
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.db.tables import Batch, DicomExport, ExportState, Image
from skinscreen.dicomnet import dicomweb
from skinscreen.dicomnet.sender import ResultBuilder, send_due
from skinscreen.review import create_app
from skinscreen.runner import run_embedded
from tests.dicom_factory import CT_IMAGE_SOP, make_dicom
from tests.orthanc import Orthanc, free_port
from tests.worker.pipeline import wait_for

SOURCE = Path(__file__).resolve().parents[1] / "data" / "isic_test_malignant_13.jpg"
SECRET = SecretStr("test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz")
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
FAILURE_REASON = "00081197"


def users(db: str, *args: str) -> str:
    done = CliRunner().invoke(cli, ["users", *args], env={"SKINSCREEN_DATABASE_URL": db})
    assert done.exit_code == 0, done.output
    return done.output.strip()


def sender_token(db: str, name: str) -> str:
    users(db, "add", name, "--role", "sender")
    token = users(db, "token", name)
    assert len(token) >= 40 and "\n" not in token
    return token


@pytest.fixture
def server(tmp_path: Path, tiny_model: Path) -> Iterator[dict[str, Any]]:
    """The review app under uvicorn on a free port, with an inbox; its database migrated."""
    db = f"sqlite:///{tmp_path / 'skinscreen.db'}"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    migrate.upgrade(db)
    settings = Settings(
        database_url=db,
        secret_key=SECRET,
        heatmap_dir=tmp_path / "heatmaps",
        model=str(tiny_model),
        inbox=[inbox],
        dicom_quiet_seconds=0.5,
    )
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None)
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    wait_for(lambda: web.started, timeout=60, what="the review server", every=0.1)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "db": db, "inbox": inbox, "settings": settings}
    finally:
        web.should_exit = True
        thread.join(timeout=30)


def photographs(folder: Path, count: int) -> list[Path]:
    return [make_dicom(SOURCE, folder / f"stow{i}.dcm", syntax="explicit_le") for i in range(count)]


def post(
    url: str, token: str | None, files: list[bytes], *, content_type: str | None = None
) -> httpx.Response:
    body, multipart_type = dicomweb.multipart(files)
    headers = {"Content-Type": content_type or multipart_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{url}/dicom-web/studies", content=body, headers=headers, timeout=60)


def test_stow_rs_answers_per_instance_and_only_a_sender_may_send(
    server: dict[str, Any], tmp_path: Path
) -> None:
    url, db = server["url"], server["db"]
    token = sender_token(db, "clinic-b")
    good = photographs(tmp_path / "src", 2)
    ct = make_dicom(SOURCE, tmp_path / "src" / "ct.dcm", syntax="explicit_le", sop_class=CT_IMAGE_SOP)

    mixed = post(url, token, [p.read_bytes() for p in good] + [ct.read_bytes(), b"not DICOM at all"])
    assert mixed.status_code == 202, mixed.text
    assert mixed.headers["content-type"] == "application/dicom+json"
    answer = pydicom.Dataset.from_json(mixed.json())
    assert {i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence} == {
        pydicom.dcmread(p).SOPInstanceUID for p in good
    }
    assert sorted(i.FailureReason for i in answer.FailedSOPSequence) == [0x0122, 0xC000]

    refused = post(url, token, [ct.read_bytes()])
    assert refused.status_code == 409
    assert refused.json()["00081198"]["Value"][0][FAILURE_REASON]["Value"] == [0x0122]
    assert post(url, token, [ct.read_bytes()], content_type="application/json").status_code == 415
    assert post(url, None, [good[0].read_bytes()]).status_code == 401
    assert post(url, "not-a-token", [good[0].read_bytes()]).status_code == 401

    # A sender's token reads nothing of the review API.
    assert post(url, token, [good[0].read_bytes()]).status_code == 200
    assert httpx.get(f"{url}/api/cases", headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert httpx.get(f"{url}/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 403

    # The stored instances reach inbox/dicom-<sender>/<study date>/ once their study is quiet.
    batch = server["inbox"] / "dicom-clinic-b" / "20240115"
    wait_for(lambda: len(list(batch.glob("*.dcm"))) == 2, timeout=30, what="the staged study released")
    assert not list(server["inbox"].rglob("*.part"))


def test_a_reviewer_token_is_refused_at_the_stow_route(server: dict[str, Any], tmp_path: Path) -> None:
    url, db = server["url"], server["db"]
    done = CliRunner().invoke(
        cli,
        ["users", "add", "derm", "--role", "reviewer", "--password-stdin"],
        input="a long enough password 123\n",
        env={"SKINSCREEN_DATABASE_URL": db},
    )
    assert done.exit_code == 0, done.output
    token = users(db, "token", "derm")
    (good,) = photographs(tmp_path / "src", 1)
    assert post(url, token, [good.read_bytes()]).status_code == 403
    assert httpx.get(f"{url}/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_results_go_out_with_stow_rs_and_the_answer_decides_each_state(
    server: dict[str, Any], tmp_path: Path
) -> None:
    """skinscreen's own endpoint as the destination: it takes the Secondary Capture (a photograph
    class) and refuses the SR with 0x0122 in its FailedSOPSequence."""
    from tests.dicomnet.test_hospital_files import build_both

    token = sender_token(server["db"], "peer")
    (source,) = photographs(tmp_path / "src", 1)
    sr, sc = build_both(source)
    settings = Settings(dicom_destination=f"{server['url']}/dicom-web/", dicomweb_token=token)
    assert settings.dicom_destination == f"{server['url']}/dicom-web"
    out = dicomweb.stow(settings, [(1, sr), (2, sc)])
    assert out[2] == (ExportState.sent, None)
    assert out[1][0] == ExportState.failed and "0x0122" in (out[1][1] or "")

    wrong = dicomweb.stow(settings.model_copy(update={"dicomweb_token": SecretStr("wrong")}), [(2, sc)])
    assert wrong[2][0] == ExportState.failed and "HTTP 401" in (wrong[2][1] or "")
    down = Settings(dicom_destination=f"http://127.0.0.1:{free_port()}/dicom-web")
    (state, error) = dicomweb.stow(down, [(2, sc)])[2]
    assert state == ExportState.pending and "unreachable" in (error or "")


def test_a_dicomweb_destination_with_credentials_in_the_url_is_refused() -> None:
    with pytest.raises(ValueError, match="no credentials"):
        Settings(dicom_destination="https://user:secret@pacs.example.org/dicom-web")
    with pytest.raises(ValueError):
        Settings(dicom_destination="ftp://pacs.example.org/dicom-web")


@pytest.mark.timeout(1800)  # a busy 2-core machine: the tiny model alone can take minutes to build
def test_two_files_stowed_by_a_sender_are_scored_and_their_results_reach_orthanc_over_stow_rs(
    server: dict[str, Any], tmp_path: Path, orthanc: Orthanc, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = sender_token(server["db"], "clinic-a")
    sources = photographs(tmp_path / "src", 2)
    statuses: list[int] = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *_a, **_k: statuses.append(r.status_code))
    client = DICOMwebClient(
        url=f"{server['url']}/dicom-web", session=session, headers={"Authorization": f"Bearer {token}"}
    )
    answer = client.store_instances([pydicom.dcmread(p) for p in sources])
    assert statuses == [200]
    assert "FailedSOPSequence" not in answer and len(answer.ReferencedSOPSequence) == 2

    inbox = server["inbox"]
    wait_for(
        lambda: len(list((inbox / "dicom-clinic-a").rglob("*.dcm"))) == 2,
        timeout=30,
        what="the study released",
    )
    values = {
        "database_url": server["db"],
        "model": server["settings"].model,
        "dicom_destination": orthanc.dicomweb,
        "heatmap_dir": str(tmp_path / "heatmaps"),
        "export_backoff": 0.2,
        "export_backoff_max": 0.5,
        "audit_fraction": 0.0,  # no case held for a blinded audit (test_security.py covers that)
    }
    for key, value in values.items():  # the scoring hook reads the settings from the environment
        monkeypatch.setenv(f"SKINSCREEN_{key.upper()}", str(value))
    settings = Settings()
    summary = run_embedded([inbox], settings=settings, once=True, progress=False)
    assert (summary.counts.scored, summary.counts.failed) == (2, 0)
    sessions = make_session_factory(make_engine(settings.database_url))
    with session_scope(sessions) as db:
        assert set(db.execute(select(Batch.site).join(Image)).scalars()) == {"dicom-clinic-a"}

    builder = ResultBuilder(settings)

    def all_sent() -> bool:
        send_due(sessions, settings, builder=builder)
        with session_scope(sessions) as db:
            states = db.execute(select(DicomExport.state)).scalars().all()
        return states.count(ExportState.sent) == 4

    wait_for(all_sent, timeout=300, what="4 results sent over STOW-RS")
    stored = orthanc.instances()
    by_class: dict[str, list[str]] = {}
    for instance in stored:
        by_class.setdefault(instance["tags"]["SOPClassUID"], []).append(instance["tags"]["StudyInstanceUID"])
    studies = sorted(str(pydicom.dcmread(p).StudyInstanceUID) for p in sources)
    assert sorted(by_class[SR_CLASS]) == studies and sorted(by_class[SC_CLASS]) == studies
    with session_scope(sessions) as db:
        destinations = set(db.execute(select(DicomExport.destination)).scalars())
    assert destinations == {orthanc.dicomweb}
