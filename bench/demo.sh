#!/usr/bin/env bash
# The demo's silver + gold build: Basin against DuckDB running the same SQL over the same
# bronze Parquet files, in one run, with time and peak RSS of each.
#
#   bench/demo.sh [SCALE]        # default 10 (≈10M invoice items); BASIN_BIN=path/to/release/basin
#
# Needs `pip install duckdb deltalake`. The demo project (source + bronze) is generated once per
# scale into bench/.demo-<SCALE> and reused; silver and gold are rebuilt from scratch each time.
set -euo pipefail
SCALE=${1:-10}
cd "$(dirname "$0")/.."
. bench/demo-lake.sh
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

measure() { # label, command… → "label seconds peak_kib"
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$OUT/time" "$@" > "$OUT/out" 2> "$OUT/err" || { tail -20 "$OUT/err" >&2; exit 1; }
  read -r secs kib < "$OUT/time"
  echo "$label $secs $kib"
}

echo "silver + gold at scale $SCALE ($(nproc) cores):"
rm -rf "$DIR/lake/silver" "$DIR/lake/gold"
# Both sides read the bronze files from the page cache: Basin runs first, and after another
# scale's run it would otherwise read them from disk (2.07x instead of 1.01x, measured).
find "$DIR/lake/bronze" -name '*.parquet' -exec cat {} + > /dev/null
b=$(measure basin "$BASIN" -C "$DIR" run schema:silver schema:gold)
d=$(measure duckdb python3 bench/duckdb_models.py "$DIR" "$OUT/duck")
read -r _ bs bk <<< "$b"; read -r _ ds dk <<< "$d"
printf "  %-8s %8.2fs  peak RSS %6d MiB\n" Basin "$bs" $((bk / 1024)) DuckDB "$ds" $((dk / 1024))
python3 -c "print(f'  Basin/DuckDB time: {$bs/$ds:.2f}x   memory: {$bk/$dk:.2f}x')"
