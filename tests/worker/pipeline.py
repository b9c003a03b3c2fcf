"""Helpers for end-to-end tests: real `skinscreen` processes on real Redis and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

SKINSCREEN = [sys.executable, "-m", "skinscreen"]


def env_for(**settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKINSCREEN_")}
    env.update({f"SKINSCREEN_{k.upper()}": str(v) for k, v in settings.items()})
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return env


def cli(args: list[str], *, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*SKINSCREEN, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(
            f"skinscreen {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return done


class Process:
    """A `skinscreen` subcommand running in its own process group, its output in a log file."""

    def __init__(
        self, args: list[str], *, env: dict[str, str], log: Path, command: list[str] = SKINSCREEN
    ) -> None:
        self.log = log
        self._fh = log.open("ab")
        self.proc = subprocess.Popen(
            [*command, *args], env=env, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: the worker's pool children die with it, mid-batch."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._fh.close()

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._fh.close()


def wait_for(check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_slowly(src: Path, dst: Path, *, seconds: float, chunks: int = 8) -> None:
    """Copy through one open handle, a chunk at a time: the ingester must wait for the end."""
    data = src.read_bytes()
    step = -(-len(data) // chunks)
    with dst.open("wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i : i + step])
            fh.flush()
            time.sleep(seconds / chunks)


def predict_by_sha(paths: list[Path], *, env: dict[str, str], model: Path) -> dict[str, float | None]:
    """`skinscreen predict` on the files, keyed by content hash."""
    out = cli(["predict", "--model", str(model), "--format", "json", *map(str, paths)], env=env)
    rows = json.loads(out.stdout)
    return {sha256(Path(r["path"])): r["probability"] for r in rows}


def image_rows(url: str) -> dict[str, dict[str, Any]]:
    """Images keyed by sha256, with their predictions."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        images = conn.execute(sa.text("SELECT id, sha256, state, reason, path FROM image")).mappings().all()
        preds = conn.execute(sa.text("SELECT image_id, model_version, probability FROM prediction")).all()
    engine.dispose()
    by_id = {row["id"]: {**row, "predictions": []} for row in images}
    for image_id, version, prob in preds:
        by_id[image_id]["predictions"].append((version, prob))
    return {row["sha256"]: row for row in by_id.values()}


def assert_each_scored_once(rows: dict[str, dict[str, Any]], files: list[Path]) -> None:
    """Every file's image (by content, from `image_rows`) is scored, with exactly one prediction."""
    for path in files:
        row = rows[sha256(path)]
        assert row["state"] == "scored", (path.name, row["reason"])
        assert len(row["predictions"]) == 1, path.name


def queued_count(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM image WHERE state = 'queued'")).scalar_one()
    engine.dispose()
    return int(n)
