#!/usr/bin/env bash
# `basin serve`: point lookups over the wire (p50/p99, queries/s, 8 clients) and an aggregate
# against DuckDB and chDB over the same Parquet files, in one run.
#
#   bench/serve.sh [SCALE]       # default 1 (≈1M invoice items); BASIN_BIN=path/to/release/basin
#
# Needs `pip install psycopg duckdb chdb deltalake pyarrow`; the lookups' PostgreSQL peer uses the
# local server (database basin_bench_serve, kept) when it answers. The demo project is generated once per scale
# into bench/.demo-<SCALE> (see demo-lake.sh) and built; the server runs on free ports.
set -euo pipefail
SCALE=${1:-1}
cd "$(dirname "$0")/.."
. bench/demo-lake.sh
[ -d "$DIR/lake/silver/fact_invoice_item" ] || "$BASIN" -C "$DIR" run schema:silver schema:gold > /dev/null
# The table served to key lookups is clustered by its key (`cluster_by`, a model setting), so a
# lookup reads one Parquet page of it instead of the whole table.
M="$DIR/models/silver/fact_invoice_item.sql"
if ! grep -q '^cluster_by' "$M"; then
  sed -i '0,/^materialized = "table"/s//materialized = "table"\ncluster_by = ["invoice_item_id"]/' "$M"
  # Built afresh: the chDB peer reads the table's directory, so it must hold one version.
  rm -rf "$DIR/lake/silver/fact_invoice_item"
  "$BASIN" -C "$DIR" run silver.fact_invoice_item > /dev/null
fi
PG=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HTTP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
grep -q '^\[users.eng\]' "$DIR/basin.toml" || printf '\n[users.eng]\nrole = "engineer"\npassword_env = "BASIN_BENCH_PASSWORD"\n' >> "$DIR/basin.toml"
BASIN_BENCH_PASSWORD=bench "$BASIN" -C "$DIR" serve --listen "127.0.0.1:$PG" --http-listen "127.0.0.1:$HTTP" 2> "$DIR.serve.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
for _ in $(seq 50); do grep -q serving "$DIR.serve.log" && break; sleep 0.2; done
python3 bench/serve_bench.py "$DIR" "$PG"

# The same lookups from pgbench, PostgreSQL's own load generator (C, prepared statements, 8
# clients on 2 threads), against Basin and against the PostgreSQL copy serve_bench.py made: the
# Python clients above share one interpreter lock, which is part of the latency they measure.
if command -v pgbench > /dev/null; then
  export PGPASSWORD=bench
  read -r rows lo hi < <(psql -h 127.0.0.1 -p "$PG" -U eng -d basin -tA -F ' ' \
    -c "SELECT COUNT(*), MIN(invoice_item_id), MAX(invoice_item_id) FROM silver.fact_invoice_item")
  LOGS=$(mktemp -d)
  lookups() { # label table conninfo
    local label=$1 table=$2 conninfo=$3
    printf '\\set key random(%s, %s)\nSELECT invoice_item_id, amount, charge_type FROM %s WHERE invoice_item_id = :key;\n' \
      "$lo" "$hi" "$table" > "$LOGS/lookup.sql"
    rm -f "$LOGS"/pgbench_log.*
    (cd "$LOGS" && pgbench -n -M prepared -c 8 -j 2 -T 10 -l -f lookup.sql "$conninfo" > out 2>&1) ||
      { cat "$LOGS/out"; return 1; }
    grep -q '^number of failed transactions: 0 ' "$LOGS/out" || { cat "$LOGS/out"; return 1; }
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$LOGS/out")
    cat "$LOGS"/pgbench_log.* | awk '{ print $3 }' | sort -n | awk -v label="$label" -v tps="$tps" \
      'function at(q) { i = int(NR * q) + 1; return a[i > NR ? NR : i] / 1000 }
       { a[NR] = $1 }
       END { printf "point lookups, 8 pgbench clients, %s: p50 %.2f ms, p99 %.2f ms, %.0f queries/s over %d queries\n", label, at(0.5), at(0.99), tps, NR }'
  }
  lookups "basin serve" silver.fact_invoice_item "host=127.0.0.1 port=$PG user=eng dbname=basin"
  # The peer serve_bench.py made, reached by the same rule (BASIN_BENCH_PG_DSN, a URL or
  # key=value, with its database swapped for basin_bench_serve).
  peer=$(python3 -c 'import os, psycopg
print(psycopg.conninfo.make_conninfo(os.environ.get("BASIN_BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"), dbname="basin_bench_serve"))')
  if psql "$peer" -tAc "SELECT 1 FROM lookup_$rows LIMIT 1" > /dev/null 2>&1; then
    lookups "PostgreSQL itself" "lookup_$rows" "$peer"
  else
    echo "PostgreSQL peer left out of the pgbench lookups: no table lookup_$rows at $peer"
  fi
  rm -rf "$LOGS"
else
  echo "pgbench not installed (Debian: postgresql-contrib): its lookups left out"
fi
echo "server peak RSS: $(grep VmHWM /proc/$SERVER/status | awk '{print int($2/1024)}') MiB"
