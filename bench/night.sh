#!/usr/bin/env bash
# The whole night, end to end: the demo's source in MariaDB ingested into bronze, silver and
# gold built, checks evaluated — by Basin (`basin run`), and by the stack users build today
# (Dagster assets that ingest with ConnectorX into Parquet and build the same SQL models with
# DuckDB, bench/night_dagster.py), on the same source database, in one run. Night 1 lands
# everything; night 2 reads the source after one more simulated day (incremental tables by
# their watermark, full tables again). Wall time and peak RSS of each.
#
#   bench/night.sh [SCALE]     # default 10; BASIN_BIN=path/to/release/basin
#                              # BASIN_BENCH_MYSQL=mysql://root@127.0.0.1:3306 (the server)
#
# Needs `pip install dagster connectorx duckdb pyarrow`. The two source states (after day 1
# and after day 2: the demo's generator with one seed, so day 2 is day 1 plus one day of
# changes) are generated once per scale into databases basin_night_<scale>_d1 and _d2.
set -euo pipefail
SCALE=${1:-10}
cd "$(dirname "$0")/.."
BASIN=$(realpath "${BASIN_BIN:-target/release/basin}")
[ -x "$BASIN" ] || { echo "build it first: cargo build --release -p basin (or set BASIN_BIN)"; exit 1; }
SERVER=${BASIN_BENCH_MYSQL:-mysql://root@127.0.0.1:3306}
HOSTPORT=${SERVER#mysql://*@}
DBS=(basin_night_${SCALE//./_}_d1 basin_night_${SCALE//./_}_d2)
WORK=bench/.night-$SCALE
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
mysql_() { mysql -h "${HOSTPORT%:*}" -P "${HOSTPORT#*:}" -u root "$@"; }

for day in 1 2; do
  db=${DBS[$((day - 1))]}
  if [ ! -f "$WORK/generated-d$day" ]; then
    echo "generating the source after day $day at scale $SCALE into $db (once)…"
    mysql_ -e "CREATE DATABASE IF NOT EXISTS $db"
    rm -rf "$WORK/gen-d$day"; mkdir -p "$WORK"
    "$BASIN" demo --dir "$WORK/gen-d$day" --scale "$SCALE" --days "$day" --source "$SERVER/$db" \
      > "$WORK/gen-d$day.log" 2>&1 || { tail -20 "$WORK/gen-d$day.log"; exit 1; }
    touch "$WORK/generated-d$day"
  fi
done

measure() { # label, command… → "seconds peak_kib"
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$OUT/time" "$@" > "$OUT/$label.out" 2> "$OUT/$label.err" \
    || { tail -30 "$OUT/$label.err" >&2; exit 1; }
  cat "$OUT/time"
}

# Basin: the demo's project, its lake and metadata empty, reading the day-1 database.
P="$WORK/basin"
rm -rf "$P" "$WORK/dagster"; mkdir -p "$P"
cp -r "$WORK/gen-d1/basin.toml" "$WORK/gen-d1/sources" "$WORK/gen-d1/models" "$P/"
point() { sed -i "s|^url = .*|url = \"$SERVER/$1\"|" "$P/sources/v3.toml"; }

echo "the night at scale $SCALE ($(nproc) cores), source MariaDB:"
for night in 1 2; do
  db=${DBS[$((night - 1))]}
  point "$db"
  # Both read the source from a warm MariaDB buffer pool: a read of every table first.
  for t in $(mysql_ -N -e "SHOW TABLES" "$db"); do mysql_ -N -e "SELECT COUNT(*) FROM $t" "$db" > /dev/null; done
  read -r bs bk <<< "$(measure basin "$BASIN" -C "$P" run '*')"
  read -r ds dk <<< "$(measure dagster python3 bench/night_dagster.py "$P" "$SERVER/$db" "$WORK/dagster")"
  label=$([ "$night" = 1 ] && echo "night 1 (full)" || echo "night 2 (incremental)")
  echo "  $label"
  printf "    %-28s %8.2fs  peak RSS %6d MiB   %s\n" Basin "$bs" $((bk / 1024)) "$(tail -1 "$OUT/basin.out")"
  printf "    %-28s %8.2fs  peak RSS %6d MiB   %s\n" "Dagster+ConnectorX+DuckDB" "$ds" $((dk / 1024)) \
    "$(tail -1 "$OUT/dagster.err")"
  python3 -c "print(f'    Dagster/Basin time: {$ds/$bs:.2f}x   Basin/Dagster memory: {$bk/$dk:.2f}x')"
  cp "$OUT/basin.out" "$WORK/basin-night$night.out"; cp "$OUT/dagster.err" "$WORK/dagster-night$night.err"
done
