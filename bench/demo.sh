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
BASIN=$(realpath "${BASIN_BIN:-target/release/basin}")
[ -x "$BASIN" ] || { echo "build it first: cargo build --release -p basin (or set BASIN_BIN)"; exit 1; }
DIR=bench/.demo-$SCALE
if [ ! -d "$DIR/lake/bronze" ]; then
  echo "generating the demo at scale $SCALE and landing it in bronze (once)…"
  /usr/bin/time -f "  demo (generate + ingest + first build): %es, peak RSS %M KiB" \
    "$BASIN" demo --dir "$DIR" --scale "$SCALE" --days 1 > "$DIR.log" 2>&1 || { tail -20 "$DIR.log"; exit 1; }
  grep -E "source:|rows written" "$DIR.log" || true
fi
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
b=$(measure basin "$BASIN" -C "$DIR" run schema:silver schema:gold)
d=$(measure duckdb python3 bench/duckdb_models.py "$DIR" "$OUT/duck")
read -r _ bs bk <<< "$b"; read -r _ ds dk <<< "$d"
printf "  %-8s %8.2fs  peak RSS %6d MiB\n" Basin "$bs" $((bk / 1024)) DuckDB "$ds" $((dk / 1024))
python3 -c "print(f'  Basin/DuckDB time: {$bs/$ds:.2f}x   memory: {$bk/$dk:.2f}x')"
