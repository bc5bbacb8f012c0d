#!/usr/bin/env bash
# Benchmark: load + validate + plan a synthetic project of N models (default 10,000), against
# `dbt parse` on the same graph (the peer), in one run.
#   - basin-core's `plan` example in release: every file read, every header and query parsed,
#     every reference checked, cycles detected, the graph ordered and the plan formatted;
#   - with BASIN_BIN=path/to/release/basin, also the whole `basin validate` / `basin plan '*'`;
#   - dbt-core 1.x (pure Python; 2.x downloads a parser from outside the registries) in
#     bench/.venv, installed on first use.
# usage: bench/plan.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release -q -p basin-core --example plan
core="${CARGO_TARGET_DIR:-target}/release/examples/plan"
python3 bench/gen_project.py "$n" "$work"

# Best of 5 wall-clock runs of a command, in seconds.
best_of() {
  local best=""
  for _ in 1 2 3 4 5; do
    local s e t
    s=$(date +%s.%N); "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; e=$(date +%s.%N)
    t=$(echo "$e - $s" | bc -l)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
  done
  printf '%.3f' "$best"
}

plan=$(best_of "$core" "$work/basin")
echo "basin-core validate + plan '*' (release): ${plan} s   [$("$core" "$work/basin")]"
if [ -n "${BASIN_BIN:-}" ]; then
  echo "basin validate (release binary):  $(best_of "$BASIN_BIN" -C "$work/basin" validate) s"
  echo "basin plan '*' (release binary):  $(best_of "$BASIN_BIN" -C "$work/basin" plan '*') s"
fi

if [ ! -x bench/.venv/bin/dbt ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --disable-pip-version-check --only-binary=:all: "dbt-core>=1.9,<2" "dbt-duckdb>=1.9,<2"
fi
dbt_version=$(bench/.venv/bin/dbt --version 2>/dev/null | awk '/installed/ {print $3; exit}')
s=$(date +%s.%N)
(cd "$work/dbt" && "$OLDPWD/bench/.venv/bin/dbt" parse --no-partial-parse --profiles-dir . --project-dir . > /dev/null)
dbt_parse=$(printf '%.3f' "$(echo "$(date +%s.%N) - $s" | bc -l)")

echo "dbt parse (dbt-core ${dbt_version}, one run): ${dbt_parse} s"
echo "ratio dbt parse / basin plan: $(echo "$dbt_parse / $plan" | bc -l | xargs printf '%.0f')x"
