#!/usr/bin/env python3
"""The watchdog's cycle time with 10,000 assets and 100,000 runs in the store, on SQLite and
on PostgreSQL, against a per-asset poller measured in the same run.

    cargo build --release -p basin-orchestrator --example watchdog_bench
    python3 bench/watchdog.py [--assets 10000] [--runs 100000] [--backend sqlite|postgres|both]

The script fills a fresh store (schema created by Basin itself) with ASSETS assets and RUNS
runs, each building one asset: its events (asset_started, then asset_materialized or, for 5%,
asset_failed with a bad_query), a materialisation per success, and one check result per asset
(2% failing). One asset in ten has a freshness SLO. Then it times:

- Basin: `watchdog_bench` runs cycles one interval apart; the first stores every class (10,000
  transitions), the next ones find nothing changed. Target: under 1 s per cycle.
- the peer: the laptop script's way, one query per asset for its latest event, its latest
  materialisation and its latest check (what a poller over an API or the store does),
  over the same store.

PostgreSQL is the local server (`BASIN_TEST_POSTGRES_URL`, default postgres://postgres@127.0.0.1:5432);
the script creates and drops database `basin_bench_watchdog`.
"""

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.environ.get("WATCHDOG_BENCH_BIN", os.path.join(ROOT, "target/release/examples/watchdog_bench"))


def rows(assets, runs, now_us):
    """Rows of runs, run_events, materializations and check_results."""
    rng = random.Random(42)
    run_rows, events, mats = [], [], []
    span = 30 * 86_400 * 1_000_000
    for i in range(runs):
        asset = f"silver.a{i % assets:05d}"
        # Runs in time order, the newest run of each asset last.
        started = now_us - span + (span * i) // runs
        finished = started + rng.randint(1_000_000, 120_000_000)
        failed = rng.random() < 0.05 and i >= runs - assets
        rid = str(uuid.uuid4())
        run_rows.append((
            rid, "FAILURE" if failed else "SUCCESS", json.dumps([asset]), None, "{}", "in_process", 0, 1, None,
            False, started, started, finished, finished, "bench:1", False,
            "bad_query" if failed else None, "No field named y" if failed else None, False, True, None,
        ))
        events.append((rid, started, "asset_started", "info", asset, "building"))
        if failed:
            events.append((rid, finished, "asset_failed", "error", asset, "bad_query: No field named y"))
        else:
            events.append((rid, finished, "asset_materialized", "info", asset, "10 rows"))
            mats.append((rid, asset, None, i, 10, None, (finished - started) // 1000, None, None, finished))
    checks = []
    for a in range(assets):
        passed = rng.random() >= 0.02
        checks.append((None, f"silver.a{a:05d}", "not_null(id)", "not_null", "error", passed,
                       "0 rows" if passed else "3 rows", "0 rows", "[]", None, 5, now_us - 3_600_000_000))
    return run_rows, events, mats, checks


RUN_SQL = ("INSERT INTO runs (id, status, selection, partition_key, tags, launcher, priority, attempt, "
           "parent_run_id, full_refresh, created_at, started_at, finished_at, heartbeat_at, worker, "
           "cancel_requested, failure_category, failure_message, queued, retried, not_before) VALUES ({})")
EVENT_SQL = "INSERT INTO run_events (run_id, at, kind, level, asset, message) VALUES ({})"
MAT_SQL = ("INSERT INTO materializations (run_id, asset, partition_key, delta_version, row_count, bytes, "
           "duration_ms, sql_hash, schema_hash, at) VALUES ({})")
CHECK_SQL = ("INSERT INTO check_results (run_id, asset, check_name, check_type, severity, passed, observed, "
             "threshold, samples, delta_version, duration_ms, at) VALUES ({})")


def fill(conn, mark, data):
    run_rows, events, mats, checks = data
    cur = conn.cursor()
    for sql, values, n in [(RUN_SQL, run_rows, 21), (EVENT_SQL, events, 6), (MAT_SQL, mats, 10), (CHECK_SQL, checks, 12)]:
        cur.executemany(sql.format(", ".join([mark] * n)), values)
    conn.commit()


def peer(conn, mark, assets):
    """Classify each asset with three queries of its own; seconds taken."""
    cur = conn.cursor()
    started = time.perf_counter()
    classes = {}
    for a in range(assets):
        asset = f"silver.a{a:05d}"
        cur.execute(f"SELECT kind FROM run_events WHERE asset = {mark} ORDER BY id DESC LIMIT 1", (asset,))
        event = cur.fetchone()
        cur.execute(f"SELECT MAX(at) FROM materializations WHERE asset = {mark}", (asset,))
        built = cur.fetchone()
        cur.execute(f"SELECT passed FROM check_results WHERE asset = {mark} ORDER BY id DESC LIMIT 1", (asset,))
        check = cur.fetchone()
        if event and event[0] == "asset_failed":
            classes[asset] = "hard_failure"
        elif check and not check[0]:
            classes[asset] = "failing_checks"
        elif built and built[0]:
            classes[asset] = "healthy"
        else:
            classes[asset] = "never_built"
    return time.perf_counter() - started


def basin(url, cwd, assets, cycles):
    out = subprocess.run([BENCH, url, "cycle", str(assets), str(cycles)], cwd=cwd, check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if not line.startswith("RESULT"):
            print("   ", line)
    result = dict(kv.split("=") for kv in out.splitlines()[-1].split()[1:])
    return float(result["first_ms"]) / 1000, float(result["steady_median_ms"]) / 1000


def run_sqlite(args, data):
    with tempfile.TemporaryDirectory() as d:
        url = "sqlite://meta.db"
        subprocess.run([BENCH, url, "init"], cwd=d, check=True)
        conn = sqlite3.connect(os.path.join(d, "meta.db"))
        t = time.perf_counter()
        fill(conn, "?", data)
        print(f"  filled in {time.perf_counter() - t:.1f}s")
        first, steady = basin(url, d, args.assets, args.cycles)
        slow = peer(conn, "?", args.assets)
        conn.close()
        return first, steady, slow


def run_postgres(args, data):
    import psycopg
    base = os.environ.get("BASIN_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
    base = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    name = "basin_bench_watchdog"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    url = f"{base}/{name}"
    try:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run([BENCH, url, "init"], cwd=d, check=True)
            with psycopg.connect(url) as conn:
                t = time.perf_counter()
                fill(conn, "%s", data)
                conn.execute("ANALYZE")
                conn.commit()
                print(f"  filled in {time.perf_counter() - t:.1f}s")
                first, steady = basin(url, d, args.assets, args.cycles)
                slow = peer(conn, "%s", args.assets)
                return first, steady, slow
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--backend", default="both", choices=["sqlite", "postgres", "both"])
    args = ap.parse_args()
    if not os.path.exists(BENCH):
        sys.exit("build it first: cargo build --release -p basin-orchestrator --example watchdog_bench")
    data = rows(args.assets, args.runs, int(time.time() * 1_000_000))
    print(f"{args.assets} assets, {args.runs} runs, {len(data[1])} events, {len(data[2])} materialisations")
    results = {}
    for backend, fn in [("sqlite", run_sqlite), ("postgres", run_postgres)]:
        if args.backend in (backend, "both"):
            print(f"== {backend}")
            results[backend] = fn(args, data)
    print()
    print("| store | first cycle (stores every class) | later cycles (median) | per-asset poller | poller / Basin |")
    print("|---|---|---|---|---|")
    for backend, (first, steady, slow) in results.items():
        print(f"| {backend} | {first:.3f} s | {steady:.3f} s | {slow:.3f} s | {slow / steady:.1f}x |")
    ok = all(first < 1 and steady < 1 for first, steady, _ in results.values())
    print(f"\ntarget: every cycle under 1 s: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
