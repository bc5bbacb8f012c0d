#!/usr/bin/env bash
# What the demo's silver checks cost: `basin run schema:silver` with the reference project's
# checks against the same build with every `[[checks]]` removed from the silver models, in one
# run, alternating, best of three each. Target: checks add under 20% at scale 10.
#
#   bench/checks.sh [SCALE]      # default 10; BASIN_BIN=path/to/release/basin
#
# Reuses the demo project of bench/demo.sh (bench/.demo-<SCALE>, generated on first use).
set -euo pipefail
SCALE=${1:-10}
cd "$(dirname "$0")/.."
. bench/demo-lake.sh
# The reference project's models as this binary ships them (an older demo dir may predate
# its checks), and a copy of them without checks.
TMP=$(mktemp -d)
trap 'rm -rf "$DIR/models/silver"; cp -r "$TMP/with/silver" "$DIR/models/silver"; rm -rf "$TMP"' EXIT
"$BASIN" init --template telecom "$TMP/fresh" > /dev/null
WITH=$TMP/with; WITHOUT=$TMP/without
mkdir -p "$WITH" "$WITHOUT"
cp -r "$TMP/fresh/models/silver" "$WITH/"
cp -r "$TMP/fresh/models/silver" "$WITHOUT/"
python3 - "$WITHOUT/silver" <<'EOF'
import pathlib, re, sys
# Drop every [[checks]] table (and its [checks.*] subtables) from the model headers.
for f in pathlib.Path(sys.argv[1]).glob("*.sql"):
    text = f.read_text()
    head, sep, body = text.partition("*/")
    out, skipping = [], False
    for line in head.splitlines(keepends=True):
        s = line.strip()
        if s.startswith("[[checks]]") or s.startswith("[checks."):
            skipping = True
            continue
        if skipping and s.startswith("["):
            skipping = False
        if not skipping:
            out.append(line)
    f.write_text("".join(out) + sep + body)
EOF
grep -q "checks" "$WITHOUT"/silver/*.sql && { echo "checks left in the stripped copy"; exit 1; }

run() { # models dir → seconds of `basin run schema:silver`
  rm -rf "$DIR/models/silver"; cp -r "$1" "$DIR/models/silver"
  local t0 t1
  t0=$(date +%s.%N)
  "$BASIN" -C "$DIR" run schema:silver > /dev/null 2> "$DIR.err" || { tail -20 "$DIR.err" >&2; exit 1; }
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}

checks=$(grep -c '^\[\[checks\]\]' "$WITH"/silver/*.sql | awk -F: '{s += $2} END {print s}')
echo "silver at scale $SCALE ($(nproc) cores), $checks checks on $(ls "$WITH"/silver/*.sql | wc -l) models:"
run "$WITHOUT/silver" > /dev/null # warm the page cache
declare -a with without
for i in 1 2 3; do
  without+=("$(run "$WITHOUT/silver")")
  with+=("$(run "$WITH/silver")")
done
python3 - "${without[*]}" "${with[*]}" <<'EOF'
import sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
print(f"  without checks: {' '.join(f'{x:.2f}s' for x in off)}  best {min(off):.2f}s")
print(f"  with checks:    {' '.join(f'{x:.2f}s' for x in on)}  best {min(on):.2f}s")
print(f"  checks add {(min(on) / min(off) - 1) * 100:.1f}% (target < 20%)")
EOF
echo "  per check (last run, from basin.check_results):"
"$BASIN" -C "$DIR" sql --format csv "SELECT asset, check_name, duration_ms FROM basin.check_results \
  WHERE run_id = (SELECT run_id FROM basin.check_results WHERE asset LIKE 'silver.%' ORDER BY at DESC LIMIT 1) \
  ORDER BY duration_ms DESC" | sed 's/^/    /'
