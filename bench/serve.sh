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
echo "server peak RSS: $(grep VmHWM /proc/$SERVER/status | awk '{print int($2/1024)}') MiB"
