#!/usr/bin/env bash
# Benchmark: load + validate + plan a synthetic project of N models (default 10,000) with a
# release build of `basin`, against `dbt parse` on the same graph (the peer), in one run.
# usage: bench/plan.sh [N]     (installs dbt-core + dbt-duckdb into bench/.venv on first use)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

basin=${BASIN_BIN:-}
if [ -z "$basin" ]; then
  cargo build --release -q -p basin
  basin="${CARGO_TARGET_DIR:-target}/release/basin"
fi
python3 bench/gen_project.py "$n" "$work"

# Best of 5 wall-clock runs, in seconds.
best_of() {
  local best=""
  for _ in 1 2 3 4 5; do
    local s e t
    s=$(date +%s.%N); "$@" > /dev/null 2>&1 || { echo "failed: $*" >&2; "$@" | tail -5; exit 1; }; e=$(date +%s.%N)
    t=$(echo "$e - $s" | bc -l)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc -l)" = 1 ]; then best=$t; fi
  done
  printf '%.3f' "$best"
}

validate=$(best_of "$basin" -C "$work/basin" validate)
plan=$(best_of "$basin" -C "$work/basin" plan '*')
rss=$( { /usr/bin/time -f '%M' "$basin" -C "$work/basin" plan '*' > /dev/null; } 2>&1 | tail -1)

if [ ! -x bench/.venv/bin/dbt ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --disable-pip-version-check dbt-core dbt-duckdb
fi
dbt_version=$(bench/.venv/bin/dbt --version 2>/dev/null | awk '/installed/ {print $3; exit}')
dbt_parse=$(cd "$work/dbt" && best_of "$OLDPWD/bench/.venv/bin/dbt" parse --no-partial-parse --profiles-dir . --project-dir .)

echo
echo "models:                      $n"
echo "basin validate:              ${validate} s"
echo "basin plan '*':              ${plan} s  (max RSS ${rss} KiB)"
echo "dbt parse (dbt-core ${dbt_version}): ${dbt_parse} s"
echo "ratio dbt parse / basin plan: $(echo "$dbt_parse / $plan" | bc -l | xargs printf '%.1f')x"
