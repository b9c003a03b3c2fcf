"""Large renditions: four parallel requests for an 81-megapixel PNG keep a real server process small."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from skinscreen.db import queries
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.review import create_app
from tests.conftest import result as scored_as
from tests.review.conftest import PASSWORDS, SECRET, review_settings, seed_database, token_for

SIDE = 9000  # 81 megapixels, under Pillow's 89-megapixel limit
PEAK_BOUND = 1000 * 2**20
"""The most the server's resident memory may grow while drawing the four renditions (5.2 GB before
decodes were bounded; 0.78 GB since)."""
HELD_BOUND = 200 * 2**20
"""The most it may keep afterwards (1.5 GB before; 0.09 GB since)."""


def rss(pid: int, field: str) -> int:
    """VmRSS (resident now) or VmHWM (the peak so far) of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def big_case(tmp_path: Path) -> tuple[str, int]:
    """A SQLite file with the review cases and one scored 81-megapixel PNG in siteA's batch folder."""
    url = f"sqlite:///{tmp_path / 'review.db'}"
    seed_database(url, tmp_path)
    folder = tmp_path / "inbox" / "siteA" / "2026-11-27"
    ramp = np.linspace(0, 255, SIDE, dtype=np.uint8)
    pixels = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[None, ::-1]), axis=-1)
    path = folder / "big.png"
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, compress_level=1)
    del pixels
    engine = make_engine(url)
    with session_scope(make_session_factory(engine)) as session:
        image_id, _ = queries.register_file(
            session,
            path=str(path),
            size=path.stat().st_size,
            mtime_ns=1,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            site="siteA",
            folder=str(folder),
        )
        queries.save_scores(
            session, {image_id: scored_as(0.9, threshold=0.5, format="png")}, model_version="tiny-test"
        )
    engine.dispose()
    return url, image_id


@pytest.fixture
def server(big_case: tuple[str, int], tmp_path: Path, tiny_model: Path) -> Iterator[tuple[str, int, int]]:
    """`skinscreen serve` in its own process: (base URL, the big case's id, the server's pid)."""
    url, image_id = big_case
    port = free_port()
    env = {
        **os.environ,
        "SKINSCREEN_DATABASE_URL": url,
        "SKINSCREEN_SECRET_KEY": SECRET.get_secret_value(),
        "SKINSCREEN_HEATMAP_DIR": str(tmp_path / "heatmaps"),
        "SKINSCREEN_MODEL": str(tiny_model),
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "skinscreen", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        yield base, image_id, process.pid
    finally:
        process.terminate()
        process.wait(20)


def test_four_parallel_large_renditions_of_an_81_megapixel_png_keep_the_server_small(
    server: tuple[str, int, int],
) -> None:
    base, image_id, pid = server
    token = httpx.post(f"{base}/api/token", data={"username": "alice", "password": PASSWORDS["alice"]})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    httpx.get(f"{base}/api/cases/{image_id}", headers=headers, timeout=30)  # warm: routes, database
    before = rss(pid, "VmRSS")

    def rendition(_: int) -> httpx.Response:
        return httpx.get(
            f"{base}/api/cases/{image_id}/image.png", headers=headers, params={"size": 2048}, timeout=300
        )

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(rendition, range(4)))
    peak, after = rss(pid, "VmHWM"), rss(pid, "VmRSS")

    assert [r.status_code for r in responses] == [200] * 4
    with Image.open(io.BytesIO(responses[0].content)) as drawn:
        assert drawn.size == (2048, 2048)
    print(f"RSS before {before >> 20} MiB, peak {peak >> 20} MiB, after {after >> 20} MiB")
    assert peak - before < PEAK_BOUND, (before >> 20, peak >> 20)
    assert after - before < HELD_BOUND, (before >> 20, after >> 20)


def test_a_file_replaced_after_its_rendition_was_drawn_gets_409_not_the_kept_rendition(
    big_case: tuple[str, int], tmp_path: Path, tiny_model: Path
) -> None:
    url, image_id = big_case
    path = tmp_path / "inbox" / "siteA" / "2026-11-27" / "big.png"
    with TestClient(create_app(review_settings(url, tmp=tmp_path, model=tiny_model))) as client:
        headers = token_for(client, "alice")
        first = client.get(f"/api/cases/{image_id}/image.png", headers=headers, params={"size": 256})
        path.write_bytes(path.read_bytes()[:-100] + b"\0" * 100)  # other bytes, same size
        again = client.get(f"/api/cases/{image_id}/image.png", headers=headers, params={"size": 256})

    assert first.status_code == 200
    assert again.status_code == 409 and b"\x89PNG" not in again.content
