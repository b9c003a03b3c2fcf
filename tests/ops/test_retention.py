"""Retention: `skinscreen purge` removes old files of reviewed or unflagged cases, and keeps the rest."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.ops.conftest import World, review_client
from tests.review.conftest import draw_lesion


def files_present(world: World) -> dict[int, bool]:
    return {i: Path(p).is_file() for i, p in world.rows("SELECT id, path FROM image")}


def test_purge_keeps_flagged_unreviewed_files_and_every_row(world_b: World, tiny_b: Path) -> None:
    world = world_b
    reviewed = {i for (i,) in world.rows("SELECT DISTINCT image_id FROM review")}
    flagged = {i for (i,) in world.rows("SELECT image_id FROM prediction WHERE flagged")}
    site_a = {
        i
        for (i,) in world.rows(
            "SELECT image.id FROM image JOIN batch ON batch.id = batch_id WHERE site = 'site-a'"
        )
    }
    sampled = {i for (i,) in world.rows("SELECT image_id FROM prediction WHERE audit")}
    kept = (flagged | sampled) - reviewed  # the audit sample waits for its verdict too
    assert kept and reviewed - kept and len(reviewed & flagged) > 0
    assert set(dict(world.rows("SELECT id, path FROM image"))) - flagged - reviewed  # unflagged, unreviewed
    paths = dict(world.rows("SELECT id, path FROM image"))
    sha = dict(world.rows("SELECT id, sha256 FROM image"))
    purged_bytes = Path(paths[min(reviewed)]).read_bytes()
    tables = ("image", "prediction", "review", "batch", "seen_file", "account")
    before = {t: world.rows(f"SELECT * FROM {t} ORDER BY id") for t in tables if t != "image"}
    images_before = world.rows("SELECT id, path, sha256, state, reason FROM image ORDER BY id")
    audit_before = world.rows("SELECT count(*) FROM audit_event")[0][0]

    assert "retention is off" in str(world.cli("purge", code=1).exception)

    # Site A's images were registered in 2020: a 30-day limit with an archive moves only theirs.
    ids = ",".join(map(str, site_a))
    world.rows(f"UPDATE image SET created_at = '2020-01-01 00:00:00.000000' WHERE id IN ({ids})")
    world.env.update(SKINSCREEN_RETENTION_DAYS="30", SKINSCREEN_ARCHIVE_DIR=str(world.root / "archive"))
    dry = world.json("purge", "--dry-run", "--format", "json")
    expect_a = {i for i in site_a if i in reviewed or i not in flagged | sampled}
    assert (dry["images"], dry["files"], dry["dry_run"]) == (len(expect_a), len(expect_a), True)
    assert all(files_present(world).values())
    archived = world.json("purge", "--format", "json")
    assert (archived["images"], archived["mode"]) == (len(expect_a), "archive")
    assert archived["kept_flagged_unreviewed"] == len((flagged - reviewed) & site_a)
    present = files_present(world)
    assert {i for i, there in present.items() if not there} == expect_a
    for i in expect_a:
        moved = world.root / "archive" / sha[i][:2] / f"{sha[i]}.jpg"
        assert moved.is_file()

    # Then a 0-day limit, deleting: every reviewed or unflagged file goes, flagged unreviewed ones stay.
    world.env.update(SKINSCREEN_RETENTION_DAYS="0")
    del world.env["SKINSCREEN_ARCHIVE_DIR"]
    deleted = world.json("purge", "--format", "json")
    expect_all = {i for i in paths if i in reviewed or i not in flagged | sampled}
    assert deleted["images"] == len(expect_all - expect_a) and deleted["mode"] == "delete"
    present = files_present(world)
    assert {i for i, there in present.items() if there} == kept
    assert world.json("purge", "--format", "json")["images"] == 0  # nothing left to do

    # Rows, scores, verdicts and hashes are intact; only purged_at changed.
    assert world.rows("SELECT id, path, sha256, state, reason FROM image ORDER BY id") == images_before
    assert {t: world.rows(f"SELECT * FROM {t} ORDER BY id") for t in before} == before
    assert {i for (i,) in world.rows("SELECT id FROM image WHERE purged_at IS NOT NULL")} == expect_all
    audit = world.rows("SELECT action, detail FROM audit_event ORDER BY id")[audit_before:]
    assert [a for a, _ in audit] == ["purge", "purge", "purge"]
    assert audit[0][1].startswith(
        f"retention 30 days, archive: {len(expect_a)} images, {len(expect_a)} files"
    )
    assert f"{len(flagged - reviewed)} flagged unreviewed kept" in audit[1][1]

    with review_client(world, tiny_b) as (client, _):
        gone = client.get(f"/cases/{min(reviewed)}").text
        assert "under the retention policy" in gone and 'id="image-removed"' in gone
        assert 'id="image"' not in gone
        still = client.get(f"/cases/{min(kept)}").text
        assert "retention policy" not in still and 'id="image"' in still

    # The ingester takes nothing as new work: a second run, then the purged bytes dropped again.
    again = world.json("run", str(world.inbox), "--once", "--format", "json")
    assert (again["new_images"], again["scored"]) == (0, 0)
    returned = world.inbox / "site-a" / "2026-12-01"
    returned.mkdir()
    (returned / "same-bytes.jpg").write_bytes(purged_bytes)
    shutil.copy(paths[min(kept)], returned / "kept-copy.jpg")
    draw_lesion(returned / "new-bytes.jpg", seed=10_000, size=96)
    third = world.json("run", str(world.inbox), "--once", "--format", "json")
    assert (third["new_images"], third["duplicates"], third["scored"]) == (1, 2, 1)
