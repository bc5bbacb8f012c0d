#!/usr/bin/env bash
# An incremental model's night against its full rebuild, in one run: the demo's
# `silver.fact_invoice_item` (incremental on invoice_item_id, reading only the line items
# bronze gained since its last build) after 1% of the source's line items changed, built
# incrementally in one copy of the project and with `--full-refresh` in another. Both copies
# start from the same lake, with the change already ingested, so each measures the model's
# build alone. Wall time and peak RSS, best of RUNS, and the rows each read.
#
#   bench/incremental.sh [SCALE] [RUNS]   # default scale 1 (about 1M line items), 3 runs
#                                         # BASIN_BIN=path/to/release/basin
#
# The demo project (embedded SQLite source, one night built) is generated once per scale
# into bench/.incremental-<scale>/base.
set -euo pipefail
SCALE=${1:-1}
RUNS=${2:-3}
cd "$(dirname "$0")/.."
BASIN=$(realpath "${BASIN_BIN:-target/release/basin}")
[ -x "$BASIN" ] || { echo "build it first: cargo build --release -p basin (or set BASIN_BIN)"; exit 1; }
WORK=bench/.incremental-$SCALE
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

if [ ! -f "$WORK/generated" ]; then
  echo "generating the demo at scale $SCALE, one night built (once)…"
  rm -rf "$WORK"; mkdir -p "$WORK"
  "$BASIN" demo --dir "$WORK/base" --scale "$SCALE" --days 1 > "$WORK/base.log" 2>&1 \
    || { tail -20 "$WORK/base.log"; exit 1; }
  touch "$WORK/generated"
fi

# 1% of the line items change (amount + 1, updated a minute past the latest change), and
# bronze lands them, in a copy of the project both builds start from.
rm -rf "$WORK/changed"
cp -r "$WORK/base" "$WORK/changed"
python3 - "$WORK/changed/source/v3.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
(latest,) = db.execute("SELECT MAX(updated_at) FROM invoice_item").fetchone()
n = db.execute(
    "UPDATE invoice_item SET amount = ROUND(amount + 1, 4), updated_at = datetime(?, '+1 minute') "
    "WHERE invoice_item_id % 100 = 7",
    (latest,),
).rowcount
(total,) = db.execute("SELECT COUNT(*) FROM invoice_item").fetchone()
db.commit()
print(f"changed {n} of {total} line items ({100 * n / total:.2f}%)")
EOF
"$BASIN" -C "$WORK/changed" ingest v3.invoice_item > "$OUT/ingest.out" 2>&1 || { cat "$OUT/ingest.out"; exit 1; }
grep -o "[0-9]* rows landed" "$OUT/ingest.out" | head -1 | sed 's/^/bronze: /'

measure() { # label, command… → "seconds peak_kib"
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$OUT/time" "$@" > "$OUT/$label.out" 2> "$OUT/$label.err" \
    || { tail -30 "$OUT/$label.out" "$OUT/$label.err" >&2; exit 1; }
  cat "$OUT/time"
}

best() { sort -n | head -1; }
: > "$OUT/inc.times"; : > "$OUT/full.times"
for run in $(seq "$RUNS"); do
  for mode in inc full; do
    rm -rf "$WORK/$mode"; cp -r "$WORK/changed" "$WORK/$mode"
    args=(run silver.fact_invoice_item); [ "$mode" = full ] && args+=(--full-refresh)
    measure "$mode" "$BASIN" -C "$WORK/$mode" "${args[@]}" >> "$OUT/$mode.times"
  done
done
read -r is ik <<< "$(best < "$OUT/inc.times")"
read -r fs fk <<< "$(best < "$OUT/full.times")"
read_inc=$(grep -o "read the [0-9]* new rows of bronze.v3__invoice_item" "$OUT/inc.out" | head -1 | sed "s/read the \([0-9]*\).*/\1/" || echo "?")
rows=$("$BASIN" -C "$WORK/inc" sql --format csv "SELECT COUNT(*) FROM silver.fact_invoice_item" | tail -1)
echo "silver.fact_invoice_item at scale $SCALE ($(nproc) cores), $rows rows, best of $RUNS:"
printf "  incremental   %7.2f s  %6d MiB  read %s rows of bronze.v3__invoice_item\n" "$is" $((ik / 1024)) "$read_inc"
printf "  full refresh  %7.2f s  %6d MiB  read every row\n" "$fs" $((fk / 1024))
python3 -c "print(f'  incremental / full: {$is / $fs * 100:.1f}% of the time')"
# The incremental table equals the full rebuild.
"$BASIN" -C "$WORK/inc" sql --format csv "SELECT * FROM silver.fact_invoice_item ORDER BY invoice_item_id" > "$OUT/inc.csv"
"$BASIN" -C "$WORK/full" sql --format csv "SELECT * FROM silver.fact_invoice_item ORDER BY invoice_item_id" > "$OUT/full.csv"
if cmp -s "$OUT/inc.csv" "$OUT/full.csv"; then echo "  the two tables are equal"; else echo "  THE TABLES DIFFER"; exit 1; fi
