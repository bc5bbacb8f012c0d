#!/usr/bin/env python3
"""Launch latency of `basin daemon`: N no-op runs released at once, time from queued to
worker started (the run's `started_at`, stamped by the worker when it takes the run).

    python3 bench/daemon.py [--runs 100] [--launcher subprocess|in_process] [--max-concurrent N]
                            [--standby N]

BASIN_BIN names the binary (default target/release/basin). The runs are released in one
SQLite transaction written the way `basin run --queue` writes them, while the daemon is
already running, so the figure includes the daemon noticing them (it polls every 100 ms),
claiming them within its limits, spawning the worker (or handing the run to a standby
worker), and the worker opening the store and taking the run. With `--standby N` the daemon
keeps N workers started ahead of their runs (`[daemon] standby_workers`); the runs are
released once the pool is full.
"""

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid


def percentile(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--launcher", default="subprocess", choices=["subprocess", "in_process"])
    ap.add_argument("--max-concurrent", type=int, default=100)
    ap.add_argument("--standby", type=int, default=0, help="[daemon] standby_workers")
    ap.add_argument("--one-by-one", action="store_true", help="release each run after the previous one finished")
    args = ap.parse_args()
    basin = os.environ.get("BASIN_BIN", os.path.join(os.path.dirname(__file__), "..", "target", "release", "basin"))
    basin = os.path.abspath(basin)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "basin.toml"), "w") as f:
            f.write(
                '[project]\nname = "bench"\n[run]\nconcurrency = 1\n'
                f'[daemon]\nlauncher = "{args.launcher}"\nmax_concurrent_runs = {args.max_concurrent}\n'
                f"standby_workers = {args.standby}\n"
            )
        os.makedirs(os.path.join(d, "models", "silver"))
        with open(os.path.join(d, "models", "silver", "noop.sql"), "w") as f:
            # A view: the runs commit nothing, so 100 of them do not race for one table.
            f.write('/* basin\nmaterialized = "view"\n*/\nSELECT 1 AS x\n')
        # Create the store (and its schema) before the daemon starts.
        subprocess.run([basin, "runs"], cwd=d, check=True, capture_output=True)
        daemon = subprocess.Popen([basin, "daemon"], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.5)
            logs = os.path.join(d, ".basin", "logs")
            deadline = time.time() + 120
            while args.launcher == "subprocess" and args.standby and time.time() < deadline:
                ready = [f for f in os.listdir(logs) if f.startswith("standby-")] if os.path.isdir(logs) else []
                if len(ready) >= args.standby:
                    # Started; give the last ones time to open the store.
                    time.sleep(1.0)
                    break
                time.sleep(0.1)
            db = sqlite3.connect(os.path.join(d, ".basin", "basin.db"), timeout=60)
            def release(n):
                now_us = int(time.time() * 1_000_000)
                with db:
                    for _ in range(n):
                        db.execute(
                            "INSERT INTO runs (id, status, selection, tags, launcher, priority, attempt, full_refresh, "
                            "created_at, cancel_requested, queued) "
                            "VALUES (?, 'QUEUED', ?, '{}', ?, 0, 1, FALSE, ?, FALSE, TRUE)",
                            (str(uuid.uuid4()), json.dumps(["silver.noop"]), args.launcher, now_us),
                        )

            def wait_all():
                deadline = time.time() + 600
                while time.time() < deadline:
                    left = db.execute(
                        "SELECT COUNT(*) FROM runs WHERE status NOT IN ('SUCCESS', 'FAILURE', 'CANCELED')"
                    ).fetchone()[0]
                    if left == 0:
                        return
                    time.sleep(0.05)

            if args.one_by_one:
                for _ in range(args.runs):
                    release(1)
                    wait_all()
                    # Not in step with the daemon's 100 ms poll.
                    time.sleep(0.137)
            else:
                release(args.runs)
                wait_all()
            rows = db.execute("SELECT status, started_at - created_at, finished_at - created_at FROM runs").fetchall()
        finally:
            daemon.terminate()
            daemon.wait()
    failed = [r for r in rows if r[0] != "SUCCESS"]
    started = [r[1] / 1000 for r in rows if r[1] is not None]
    finished = [r[2] / 1000 for r in rows if r[2] is not None]
    how = "one after another" if args.one_by_one else "at once"
    print(f"basin daemon, launcher {args.launcher}, {args.runs} no-op runs released {how}, "
          f"max_concurrent_runs {args.max_concurrent}, standby_workers {args.standby}, {os.cpu_count()} cores")
    print(f"  queued -> worker started: p50 {percentile(started, 50):.0f} ms, p99 {percentile(started, 99):.0f} ms, "
          f"max {max(started):.0f} ms")
    print(f"  queued -> run finished:   p50 {percentile(finished, 50):.0f} ms, p99 {percentile(finished, 99):.0f} ms, "
          f"mean {statistics.mean(finished):.0f} ms")
    print(f"  runs not successful: {len(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
