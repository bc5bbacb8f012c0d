#!/usr/bin/env python3
"""The peer of bench/daemon.py: Dagster's launch latency for no-op runs on this machine.

    python3 -m venv /tmp/dagster-venv && /tmp/dagster-venv/bin/pip install dagster
    /tmp/dagster-venv/bin/python bench/dagster_latency.py [--runs 20]

A Dagster instance in a temporary DAGSTER_HOME with the QueuedRunCoordinator (no concurrency
limit that would bind) and the default run launcher (a subprocess per run), `dagster-daemon
run` dequeuing, and a one-op job. Runs are submitted one after another with `dagster job
launch` (each submission is a CLI process; the figure measured is per run, from the run's
creation to its start as recorded by Dagster, so the submission time does not count).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

DEFS = """
from dagster import Definitions, job, op

@op
def noop():
    pass

@job
def noop_job():
    noop()

defs = Definitions(jobs=[noop_job])
"""

INSTANCE = """
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 100
telemetry:
  enabled: false
"""


def percentile(values, p):
    values = sorted(values)
    return values[max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    bindir = os.path.dirname(sys.executable)
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, DAGSTER_HOME=home)
        with open(os.path.join(home, "dagster.yaml"), "w") as f:
            f.write(INSTANCE)
        with open(os.path.join(home, "defs.py"), "w") as f:
            f.write(DEFS)
        with open(os.path.join(home, "workspace.yaml"), "w") as f:
            f.write("load_from:\n  - python_file: defs.py\n")
        daemon = subprocess.Popen(
            [os.path.join(bindir, "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            submit = []
            for _ in range(args.runs):
                t = time.time()
                r = subprocess.run(
                    [os.path.join(bindir, "dagster"), "job", "launch", "-w", "workspace.yaml", "-j", "noop_job"],
                    cwd=home, env=env, capture_output=True, text=True,
                )
                if r.returncode != 0:
                    sys.exit(f"dagster job launch failed ({r.returncode}):\n{r.stderr[-3000:]}")
                submit.append(time.time() - t)
            from dagster import DagsterInstance, DagsterRunStatus

            os.environ["DAGSTER_HOME"] = home
            instance = DagsterInstance.get()
            deadline = time.time() + 900
            while time.time() < deadline:
                runs = instance.get_runs()
                if len(runs) == args.runs and all(r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) for r in runs):
                    break
                time.sleep(1)
            records = instance.get_run_records()
            started = [(r.start_time - r.create_timestamp.timestamp()) * 1000 for r in records if r.start_time]
            finished = [(r.end_time - r.create_timestamp.timestamp()) * 1000 for r in records if r.end_time]
            ok = sum(1 for r in records if r.dagster_run.status == DagsterRunStatus.SUCCESS)
        finally:
            daemon.terminate()
            daemon.wait()
    print(f"dagster {__import__('dagster').__version__}, QueuedRunCoordinator + default (subprocess) launcher, "
          f"{args.runs} no-op runs submitted one by one, {os.cpu_count()} cores")
    print(f"  submission (dagster job launch): mean {statistics.mean(submit):.1f} s per run")
    print(f"  created -> run started: p50 {percentile(started, 50):.0f} ms, p99 {percentile(started, 99):.0f} ms, "
          f"max {max(started):.0f} ms")
    print(f"  created -> run finished: p50 {percentile(finished, 50):.0f} ms, p99 {percentile(finished, 99):.0f} ms")
    print(f"  successful: {ok}/{len(records)}")


if __name__ == "__main__":
    main()
