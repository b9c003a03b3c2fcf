"""Which inbox paths are candidates, where they belong, and which symlinks lead out of the inbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from skinscreen.ingest import scanner


@pytest.mark.parametrize(
    "name", ["x.part", "x.jpg.part", "x.TMP", ".hidden.jpg", "~lock.jpg", "a.jpg.crdownload"]
)
def test_names_still_being_written_or_hidden_are_temporary(name: str) -> None:
    assert scanner.is_temporary(Path("/inbox/site") / name)


@pytest.mark.parametrize("name", ["lesion.jpg", "scan.dcm", "IMG_0001.JPEG", "part.jpg", "no-suffix"])
def test_ordinary_names_are_not_temporary(name: str) -> None:
    assert not scanner.is_temporary(Path("/inbox/site") / name)


def test_the_first_folder_is_the_site_and_the_parent_folder_is_the_batch(inbox: Path) -> None:
    where = scanner.placement(inbox / "siteA" / "2026-11-27" / "file.jpg", inbox)

    assert where == scanner.Placement(site="siteA", folder=str(inbox / "siteA" / "2026-11-27"))


def test_a_file_directly_under_the_inbox_belongs_to_the_inbox_itself(inbox: Path) -> None:
    assert scanner.placement(inbox / "file.jpg", inbox) == scanner.Placement(
        site="(inbox)", folder=str(inbox)
    )


def test_only_symlinks_leading_out_of_the_inbox_are_outside(inbox: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.jpg").write_bytes(b"outside")
    (inbox / "real.jpg").write_bytes(b"inside")
    (inbox / "out.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    (inbox / "in.jpg").symlink_to(inbox / "real.jpg")
    (inbox / "dangling.jpg").symlink_to(tmp_path / "missing.jpg")

    assert scanner.outside_inbox(inbox / "out.jpg", inbox)
    assert not scanner.outside_inbox(inbox / "in.jpg", inbox)
    assert not scanner.outside_inbox(inbox / "real.jpg", inbox)
    assert scanner.outside_inbox(inbox / "dangling.jpg", inbox)  # cannot be shown to stay inside


def test_walk_skips_hidden_folders_temporary_names_and_directory_symlinks(
    inbox: Path, tmp_path: Path
) -> None:
    day = inbox / "siteA" / "2026-11-27"
    day.mkdir(parents=True)
    for name in ("b.jpg", "a.jpg", "c.jpg.part", ".d.jpg", "~e.jpg"):
        (day / name).write_bytes(b"x")
    (inbox / ".trash").mkdir()
    (inbox / ".trash" / "old.jpg").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")
    (inbox / "siteB").symlink_to(outside, target_is_directory=True)
    (inbox / "lesion.jpg").mkdir()  # a folder with a file's name is walked into, not yielded
    (inbox / "lesion.jpg" / "inner.jpg").write_bytes(b"x")

    assert list(scanner.walk(inbox)) == [
        inbox / "lesion.jpg" / "inner.jpg",
        day / "a.jpg",
        day / "b.jpg",
    ]


def test_walk_yields_a_symlinked_file_for_the_ingester_to_judge(inbox: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere.jpg").write_bytes(b"outside")
    (inbox / "link.jpg").symlink_to(tmp_path / "elsewhere.jpg")

    assert list(scanner.walk(inbox)) == [inbox / "link.jpg"]


def test_a_file_under_a_hidden_folder_is_in_a_hidden_folder(inbox: Path) -> None:
    assert scanner.in_hidden_folder(inbox / ".staging" / "a.jpg", inbox)
    assert not scanner.in_hidden_folder(inbox / "siteA" / "a.jpg", inbox)
    assert not scanner.in_hidden_folder(Path("/elsewhere/.x/a.jpg"), inbox)
