#!/usr/bin/env python
"""Load run (issue 6): drop N distinct JPEGs at once into a watched inbox and measure the pipeline.

Reports ingest delay (file written -> registered as queued, p50/p95), time to empty the queue,
peak resident memory of the ingester and of each worker process tree, and checks that the
database holds exactly one image and one prediction per file on disk.

    .venv/bin/python scripts/load_run.py --files 10000 --workers 1 [--model DIR] [--backend onnx-int8]

Needs Redis and PostgreSQL on 127.0.0.1 (the suite's services); uses a fresh schema in `test`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "skin-cancer-mvb" / "test"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def distinct_jpeg(src: bytes, n: int) -> bytes:
    """The same picture with a JPEG comment segment that makes its bytes (and sha256) unique."""
    note = f"skinscreen load run {n}".encode()
    return src[:2] + b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note + src[2:]


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its children (Linux /proc)."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            pids += [int(c) for c in children]
        except OSError:
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--model", default="default")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    schema = f"load_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG}?options=-csearch_path%3D{schema}"
    env = {
        **os.environ,
        "SKINSCREEN_DATABASE_URL": url,
        "SKINSCREEN_BROKER_URL": "redis://127.0.0.1:6379/0",
        "SKINSCREEN_MODEL": args.model,
        "SKINSCREEN_BACKEND": args.backend,
        "SKINSCREEN_BATCH_SIZE": str(args.batch_size),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    skinscreen = [sys.executable, "-m", "skinscreen"]
    subprocess.run([*skinscreen, "db", "upgrade"], env=env, check=True, capture_output=True)
    sources = [p.read_bytes() for p in sorted(DATA.rglob("*.jpg"))]
    work = Path(tempfile.mkdtemp(prefix="skinscreen-load-"))
    inbox = work / "inbox"
    (inbox / "site").mkdir(parents=True)
    logs = work / "logs"
    logs.mkdir()
    procs = {
        "ingest": subprocess.Popen(
            [*skinscreen, "ingest", str(inbox)],
            env=env,
            stdout=(logs / "ingest.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    }
    for i in range(args.workers):
        procs[f"worker{i}"] = subprocess.Popen(
            [*skinscreen, "worker", "-n", f"load{i}@%h"],
            env=env,
            stdout=(logs / f"worker{i}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    peaks = dict.fromkeys(procs, 0)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for name, proc in procs.items():
                peaks[name] = max(peaks[name], tree_rss(proc.pid))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(10)  # let the workers load the model
    folder = inbox / "site" / "night"
    folder.mkdir()
    started = time.time()
    written: dict[str, float] = {}
    for n in range(args.files):
        path = folder / f"img{n:05d}.jpg"
        path.write_bytes(distinct_jpeg(sources[n % len(sources)], n))
        written[str(path)] = time.time()
    drop_seconds = time.time() - started
    print(f"dropped {args.files} files in {drop_seconds:.1f} s", flush=True)

    engine = sa.create_engine(url)
    last_report = 0.0
    while True:
        with engine.connect() as conn:
            done, total = conn.execute(
                sa.text("SELECT count(*) FILTER (WHERE state != 'queued'), count(*) FROM image")
            ).one()
        if total == args.files and done == total:
            break
        if time.time() - last_report > 30:
            print(f"  {time.time() - started:6.0f} s: {total} registered, {done} done", flush=True)
            last_report = time.time()
        time.sleep(1)
    emptied = time.time() - started
    stop.set()
    sampler.join()
    for proc in procs.values():
        proc.terminate()
    for proc in procs.values():
        proc.wait(timeout=60)

    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT path, created_at FROM image")).all()
        preds, distinct = conn.execute(
            sa.text("SELECT count(*), count(DISTINCT image_id) FROM prediction")
        ).one()
        states = dict(conn.execute(sa.text("SELECT state, count(*) FROM image GROUP BY state")).all())
    engine.dispose()
    delays = sorted(
        r.created_at.replace(tzinfo=r.created_at.tzinfo or UTC).timestamp() - written[r.path] for r in rows
    )
    on_disk = sum(1 for _ in folder.iterdir())
    p95 = delays[int(0.95 * (len(delays) - 1))]
    print(
        f"files on disk {on_disk}, images in db {len(rows)}, predictions {preds} "
        f"({distinct} distinct images), states {states}"
    )
    print(
        f"ingest delay (written -> queued): p50 {statistics.median(delays):.2f} s, p95 {p95:.2f} s, "
        f"max {delays[-1]:.2f} s"
    )
    print(
        f"time to empty (first file written -> last scored): {emptied:.0f} s "
        f"({args.files / emptied:.1f} files/s)"
    )
    for name, peak in peaks.items():
        print(f"peak resident memory {name}: {peak / 2**20:.0f} MiB")
    ok = on_disk == len(rows) == preds == distinct == args.files
    print("nothing lost, nothing duplicated" if ok else "MISMATCH: see the counts above")
    print(f"at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; logs in {logs}")
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
