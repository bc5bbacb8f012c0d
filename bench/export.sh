#!/usr/bin/env bash
# `basin serve` exporting a whole table: the server's peak RSS while it sends
# silver.fact_invoice_item (10.6M rows at scale 10) over HTTP as CSV, a JSON array, JSON lines
# and an Arrow IPC stream, one at a time and four at once, against the same export over the
# PostgreSQL wire endpoint (COPY … TO STDOUT, psql) measured in the same run.
#
#   bench/export.sh [SCALE]      # default 10; BASIN_BIN=path/to/release/basin
#
# Each export runs against a freshly started server, so each peak is that export's alone
# (server start and the catalog included). Needs curl and psql. Target: every HTTP peak under
# 300 MiB.
set -euo pipefail
SCALE=${1:-10}
cd "$(dirname "$0")/.."
. bench/demo-lake.sh
[ -d "$DIR/lake/silver/fact_invoice_item" ] || "$BASIN" -C "$DIR" run schema:silver > /dev/null
grep -q '^\[users.eng\]' "$DIR/basin.toml" || printf '\n[users.eng]\nrole = "engineer"\npassword_env = "BASIN_BENCH_PASSWORD"\n' >> "$DIR/basin.toml"
export BASIN_BENCH_PASSWORD=bench PGPASSWORD=bench
QUERY="SELECT * FROM silver.fact_invoice_item"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Start a server, run "$@" against it (PG and HTTP ports in the environment), print the
# server's peak RSS in MiB and the wall time.
measure() { # label command...
  local label=$1; shift
  PG=$(free_port); HTTP=$(free_port); export PG HTTP
  "$BASIN" -C "$DIR" serve --listen "127.0.0.1:$PG" --http-listen "127.0.0.1:$HTTP" 2> "$DIR.export.log" &
  local server=$!
  for _ in $(seq 100); do grep -q serving "$DIR.export.log" && break; sleep 0.1; done
  local start=$(date +%s.%N)
  "$@"
  local end=$(date +%s.%N)
  local peak=$(awk '/VmHWM/ { print $2 }' "/proc/$server/status")
  kill "$server"; wait "$server" 2> /dev/null || true
  printf '%-44s peak RSS %6.0f MiB   %6.1f s\n' "$label" "$(echo "$peak / 1024" | bc -l)" "$(echo "$end - $start" | bc -l)"
  echo "$peak" > "$DIR.export.peak"
}

wire() { psql -h 127.0.0.1 -p "$PG" -U eng -d basin -X -q -c "COPY ($QUERY) TO STDOUT WITH (FORMAT csv)" > /dev/null; }
http() { # accept
  curl -sS --fail -o /dev/null -u eng:bench -H 'Content-Type: application/sql' -H "Accept: $1" \
    --data-binary "$QUERY" "http://127.0.0.1:$HTTP/api/sql"
}
four() { # accept
  local pids=()
  for _ in 1 2 3 4; do http "$1" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
}

rows=$("$BASIN" -C "$DIR" sql --format csv "SELECT COUNT(*) AS n FROM silver.fact_invoice_item" | tail -1)
echo "exporting silver.fact_invoice_item: $rows rows (scale $SCALE)"
measure "wire: COPY TO STDOUT (csv), psql [peer]" wire
wire_peak=$(cat "$DIR.export.peak")
worst=0
for spec in "text/csv:CSV" "application/json:JSON array" "application/x-ndjson:JSON lines" \
            "application/vnd.apache.arrow.stream:Arrow IPC"; do
  accept=${spec%%:*}; name=${spec#*:}
  measure "HTTP $name" http "$accept"
  peak=$(cat "$DIR.export.peak"); [ "$peak" -gt "$worst" ] && worst=$peak
  measure "HTTP $name, 4 at once" four "$accept"
  peak=$(cat "$DIR.export.peak"); [ "$peak" -gt "$worst" ] && worst=$peak
done
printf 'highest HTTP peak %.0f MiB (target < 300 MiB); %.2f× the wire endpoint'"'"'s single export\n' \
  "$(echo "$worst / 1024" | bc -l)" "$(echo "$worst / $wire_peak" | bc -l)"
