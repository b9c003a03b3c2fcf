"""STOW-RS pieces without a network: reading a PS3.18 answer, and taking a multipart body apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from skinscreen.db.tables import ExportState
from skinscreen.dicomnet import dicomweb
from skinscreen.dicomnet.dicomweb_in import StowRequestError, parts, receive
from skinscreen.dicomnet.listener import StudyStager
from tests.dicom_factory import make_dicom

SOURCE = Path(__file__).resolve().parents[1] / "data" / "isic_test_malignant_13.jpg"
ROOT = "https://pacs.example.org/dicom-web"


def item(uid: str, **reasons: int) -> dict[str, object]:
    out: dict[str, object] = {"00081155": {"vr": "UI", "Value": [uid]}}
    tags = {"failure": "00081197", "warning": "00081196"}
    for name, code in reasons.items():
        out[tags[name]] = {"vr": "US", "Value": [code]}
    return out


def test_each_object_is_judged_by_the_sequence_that_names_it() -> None:
    body = {
        "00081199": {"vr": "SQ", "Value": [item("1.1"), item("1.2", warning=0xB000)]},
        "00081198": {"vr": "SQ", "Value": [item("1.3", failure=0xA700)]},
    }
    out = dicomweb.judge(202, body, ["1.1", "1.2", "1.3", "1.4"], ROOT)
    assert out["1.1"] == (ExportState.sent, None)
    assert out["1.2"][0] == ExportState.sent and "0xB000" in (out["1.2"][1] or "")
    assert out["1.3"] == (ExportState.failed, "STOW-RS failure 0xA700 (Refused: Out of Resources)")
    assert out["1.4"] == (ExportState.failed, f"{ROOT} answered HTTP 202 and did not list the object")


def test_a_200_without_a_body_sends_and_server_trouble_waits() -> None:
    assert dicomweb.judge(200, None, ["1.1"], ROOT) == {"1.1": (ExportState.sent, None)}
    for code in (408, 429, 500, 503):
        assert dicomweb.judge(code, None, ["1.1"], ROOT)["1.1"][0] == ExportState.pending
    for code in (400, 401, 403, 404, 415):
        assert dicomweb.judge(code, {"junk": 1}, ["1.1"], ROOT)["1.1"][0] == ExportState.failed


def test_dicomweb_roots_are_checked() -> None:
    assert dicomweb.parse_root(" http://pacs:8042/dicom-web/ ") == "http://pacs:8042/dicom-web"
    for bad in (
        "https://u:p@pacs/dicom-web",
        "http:///dicom-web",
        "https://pacs/dw?x=1",
        "http://pacs:99999/x",
    ):
        with pytest.raises(ValueError):
            dicomweb.parse_root(bad)


def test_a_multipart_body_comes_apart_into_its_dicom_files() -> None:
    body, content_type = dicomweb.multipart([b"first", b"second\r\n--not-the-boundary"])
    assert parts(body, content_type) == [
        ("application/dicom", b"first"),
        ("application/dicom", b"second\r\n--not-the-boundary"),
    ]
    # A quoted boundary, a preamble, a part without headers and an epilogue, as clients send them.
    raw = (
        b"preamble\r\n--b1\r\n\r\nbare\r\n--b1\r\nContent-Type: text/plain\r\n\r\nnote\r\n--b1--\r\nepilogue"
    )
    assert parts(raw, 'multipart/related; type="application/dicom"; boundary="b1"') == [
        ("application/dicom", b"bare"),
        ("text/plain", b"note"),
    ]


@pytest.mark.parametrize(
    "content_type",
    ["application/dicom", "multipart/related; boundary=b1; type=application/json", "multipart/related"],
)
def test_a_request_that_is_not_multipart_dicom_is_refused_whole(content_type: str) -> None:
    with pytest.raises(StowRequestError):
        parts(b"--b1\r\n\r\nx\r\n--b1--", content_type)


def test_an_inbox_that_cannot_take_an_instance_fails_it_with_out_of_resources(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.write_text("a file where the inbox folder should be")
    photo = make_dicom(SOURCE, tmp_path / "p.dcm", syntax="explicit_le")
    body, content_type = dicomweb.multipart([photo.read_bytes()])
    answer = receive(body, content_type, site="clinic", stager=StudyStager(inbox, quiet_seconds=1))
    assert (answer.status, answer.stored, answer.failed) == (409, 0, 1)
    assert answer.body["00081198"]["Value"][0]["00081197"]["Value"] == [0xA700]
