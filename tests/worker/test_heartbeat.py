"""Held batches and heartbeats on a real Redis: a slow holder keeps its batch, a killed one loses it once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from skinscreen.config import Settings
from skinscreen.db import migrate, queries
from skinscreen.db.session import make_engine, make_session_factory, session_scope
from skinscreen.heartbeat import HELD, Holds, orphan_taker, take_orphans
from skinscreen.ingest.dispatch import Dispatcher
from skinscreen.results import FileScore

# A process that holds a batch, then dies by SIGKILL in the middle of it (no finally runs).
_DIES_HOLDING = """
import os, signal, sys
from skinscreen.heartbeat import Holds, connect
holds = Holds(connect(sys.argv[1]), every=0.2, timeout=1.0)
with holds.holding("dead-task", [4, 5]):
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_a_slow_holder_keeps_its_batch_past_the_timeout(client: redis.Redis) -> None:
    holds = Holds(client, every=0.2, timeout=1.0)
    with holds.holding("slow-task", [1, 2, 3]):
        deadline = time.monotonic() + 3.0  # three timeouts long: only the heartbeat keeps it
        while time.monotonic() < deadline:
            assert take_orphans(client) == []
            time.sleep(0.1)
        assert client.hexists(HELD, "slow-task")
    assert client.hlen(HELD) == 0 and take_orphans(client) == []


def test_a_killed_holders_batch_is_taken_once_after_the_timeout(client: redis.Redis, redis_url: str) -> None:
    done = subprocess.run([sys.executable, "-c", _DIES_HOLDING, redis_url], timeout=60)
    assert done.returncode == -9
    died = time.monotonic()
    taken: list[int] = []
    while not taken and time.monotonic() - died < 10:
        taken = take_orphans(client)
        time.sleep(0.05)
    assert taken == [4, 5]
    assert 0.5 < time.monotonic() - died < 3  # not before the heartbeat's timeout, soon after it
    assert take_orphans(client) == []  # taken once


def test_an_unreachable_redis_gives_no_orphans() -> None:
    assert orphan_taker("redis://127.0.0.1:1/0")() == []


def test_the_dispatcher_resends_only_the_orphans_still_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        ids = [
            queries.register_file(
                session, path=f"/in/s/d/{i}.jpg", size=1, mtime_ns=i, sha256=f"{i:064d}", site="s", folder="d"
            )[0]
            for i in range(3)
        ]
        done = FileScore(Path("x.jpg"), 0.2, False, 0.5)
        queries.save_scores(session, {ids[0]: done}, model_version="v")
    sent: list[list[int]] = []
    dispatcher = Dispatcher(
        settings=Settings(database_url=url), sessions=sessions, send=sent.append, orphans=lambda: list(ids)
    )
    assert dispatcher.resend_orphans() == 2
    engine.dispose()
    assert sent == [ids[1:]]
