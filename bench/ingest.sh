#!/usr/bin/env bash
# Full snapshot of a generated table from MariaDB and PostgreSQL into bronze: Basin against
# ConnectorX (read_sql to Arrow, then Parquet) and the raw client floor, in one run, with
# peak RSS; then an incremental run after changing 1% of the rows.
#
#   bench/ingest.sh [ROWS]      # default 10,000,000; BASIN_BIN=path/to/release/basin
#   BASIN_ONLY=1 bench/ingest.sh 30000000   # Basin's runs only (the 3× memory check)
#   MYSQL_BUFFER_POOL=2G bench/ingest.sh     # MariaDB's innodb_buffer_pool_size for this run
#                                            # (set back to what it was when the script ends)
#
# Needs the local MariaDB (root, no password) and PostgreSQL (postgres, trust), and
# `pip install connectorx pyarrow`. The generated tables stay in database `basin_bench`
# (re-generated when the row count differs); everything else is in a temporary directory.
set -euo pipefail
ROWS=${1:-10000000}
T=bench_$ROWS   # one table per size, so sizes can be compared without regenerating
cd "$(dirname "$0")/.."
BASIN=${BASIN_BIN:-target/release/basin}
GENERATE_ONLY=${GENERATE_ONLY:-}
[ -n "$GENERATE_ONLY" ] || [ -x "$BASIN" ] || { echo "build it first: cargo build --release -p basin (or set BASIN_BIN)"; exit 1; }
MY="mysql -uroot -h127.0.0.1"
PG="psql -q -h 127.0.0.1 -U postgres"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [ -n "${MYSQL_BUFFER_POOL:-}" ]; then
  POOL_BEFORE=$($MY -N -e "SELECT @@innodb_buffer_pool_size")
  trap 'rm -rf "$WORK"; $MY -e "SET GLOBAL innodb_buffer_pool_size = $POOL_BEFORE"' EXIT
  bytes=$(numfmt --from=iec "$MYSQL_BUFFER_POOL")
  $MY -e "SET GLOBAL innodb_buffer_pool_size = $bytes"
  # The resize runs in the background; wait until the server reports the new size.
  for _ in $(seq 60); do [ "$($MY -N -e "SELECT @@innodb_buffer_pool_size")" = "$bytes" ] && break; sleep 1; done
  echo "MariaDB innodb_buffer_pool_size = $MYSQL_BUFFER_POOL for this run (was $POOL_BEFORE bytes)"
fi

# --- data: ~10 mixed-type columns, an indexed cursor -------------------------------------
$MY -e "CREATE DATABASE IF NOT EXISTS basin_bench"
have=$($MY -N basin_bench -e "SELECT COUNT(*) FROM $T" 2>/dev/null || echo 0)
if [ "$have" != "$ROWS" ]; then
  echo "generating $ROWS rows in MariaDB…"
  $MY basin_bench -e "DROP TABLE IF EXISTS $T;
    CREATE TABLE $T (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, amount DECIMAL(18,4),
      qty INT, price DOUBLE, status VARCHAR(16), note VARCHAR(64), created DATE,
      updated_at DATETIME(6) NOT NULL, flag TINYINT(1), KEY (updated_at));
    INSERT INTO $T SELECT seq, seq % 100000, seq * 0.0137, seq % 17, seq * 1.5,
      ELT(1 + seq % 4, 'open', 'paid', 'void', 'late'), CONCAT('note ', seq),
      DATE '2020-01-01' + INTERVAL (seq % 1500) DAY, TIMESTAMP '2020-01-01 00:00:00' + INTERVAL seq SECOND, seq % 2
      FROM seq_1_to_$ROWS;"
fi
$PG -tc "SELECT 1 FROM pg_database WHERE datname = 'basin_bench'" | grep -q 1 || $PG -c "CREATE DATABASE basin_bench"
have=$($PG -d basin_bench -tAc "SELECT COUNT(*) FROM $T" 2>/dev/null || echo 0)
if [ "$have" != "$ROWS" ]; then
  echo "generating $ROWS rows in PostgreSQL…"
  $PG -d basin_bench -c "DROP TABLE IF EXISTS $T;
    CREATE TABLE $T (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric(18,4),
      qty int, price double precision, status varchar(16), note varchar(64), created date,
      updated_at timestamp NOT NULL, flag boolean);
    INSERT INTO $T SELECT g, g % 100000, g * 0.0137, g % 17, g * 1.5,
      (ARRAY['open','paid','void','late'])[1 + g % 4], 'note ' || g,
      DATE '2020-01-01' + (g % 1500), TIMESTAMP '2020-01-01' + g * INTERVAL '1 second', g % 2 = 1
      FROM generate_series(1, $ROWS) g;
    CREATE INDEX ON $T (updated_at);"
  $PG -d basin_bench -c "VACUUM ANALYZE $T"
fi

[ -z "$GENERATE_ONLY" ] || exit 0

# --- measuring ----------------------------------------------------------------------------
# Prints "seconds peak_rss_mib" of a command.
measure() {
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" > "$WORK/out" 2> "$WORK/err" || { cat "$WORK/out" "$WORK/err"; exit 1; }
  awk '{ printf "%s %.0f\n", $1, $2 / 1024 }' "$WORK/time"
}
row() { # name seconds rss
  printf "%-34s %8.2f s %12.0f rows/s %8s MiB\n" "$1" "$2" "$(echo "$ROWS / $2" | bc -l)" "$3"
}

mkdir -p "$WORK/p/sources"
echo '[project]
name = "bench"' > "$WORK/p/basin.toml"
for kind in mysql postgres; do
  if [ $kind = mysql ]; then url="mysql://root@127.0.0.1:3306/basin_bench"; else url="postgres://postgres@127.0.0.1:5432/basin_bench"; fi
  printf 'kind = "%s"\nurl = "%s"\nmax_connections = 2\n[[tables]]\nname = "%s"\nchunk_rows = 2000000\n' $kind $url $T > "$WORK/p/sources/${kind}_full.toml"
  printf 'kind = "%s"\nurl = "%s"\nmax_connections = 2\n[[tables]]\nname = "%s"\nmode = "incremental"\ncursor = "updated_at"\nchunk_rows = 2000000\n' $kind $url $T > "$WORK/p/sources/${kind}_incr.toml"
done

cat > "$WORK/cx.py" <<'PY'
import sys, connectorx as cx, pyarrow.parquet as pq
url, out, name = sys.argv[1], sys.argv[2], sys.argv[3]
table = cx.read_sql(url, f"SELECT * FROM {name}", return_type="arrow")
pq.write_table(table, out)
print(table.num_rows)
PY

echo
echo "== full snapshot of $ROWS rows (2 cores; Basin reads 2 key-range chunks at once)"
for kind in mysql postgres; do
  if [ $kind = mysql ]; then url="mysql://root@127.0.0.1:3306/basin_bench"; else url="postgres://postgres@127.0.0.1:5432/basin_bench"; fi
  echo "-- $kind"
  if [ -n "${BASIN_ONLY:-}" ]; then :; elif [ $kind = mysql ]; then
    read -r t m < <(measure $MY --quick basin_bench -e "SELECT * FROM $T"); row "raw client (mysql --quick)" "$t" "$m"
  else
    read -r t m < <(measure $PG -d basin_bench -c "COPY (SELECT * FROM $T) TO STDOUT"); row "raw client (psql COPY)" "$t" "$m"
  fi
  cx_t=0
  if [ -z "${BASIN_ONLY:-}" ]; then
    read -r cx_t cx_m < <(measure python3 "$WORK/cx.py" "$url" "$WORK/cx.parquet" $T); row "ConnectorX → Parquet" "$cx_t" "$cx_m"
  fi
  read -r b_t b_m < <(measure "$BASIN" -C "$WORK/p" ingest ${kind}_full); row "basin ingest (full, into bronze)" "$b_t" "$b_m"
  grep -E "^ok|FAILED" "$WORK/out" | sed 's/^/   /'
  [ -n "${BASIN_ONLY:-}" ] || printf "   Basin vs ConnectorX: %.2fx\n" "$(echo "$cx_t / $b_t" | bc -l)"

  read -r i_t i_m < <(measure "$BASIN" -C "$WORK/p" ingest ${kind}_incr); row "basin ingest (incremental, first)" "$i_t" "$i_m"
  one=$((ROWS / 100))
  # The increment reads [watermark - lag (5 minutes), MAX(cursor)]: the watermark is the
  # cursor's maximum before the update, which moves the changed rows' cursor an hour past it
  # (past the lag, whatever earlier runs left in the table).
  if [ $kind = mysql ]; then
    wm=$($MY -N basin_bench -e "SELECT MAX(updated_at) FROM $T")
    $MY basin_bench -e "UPDATE $T SET status = 'changed', updated_at = TIMESTAMP '$wm' + INTERVAL 1 HOUR WHERE id % 100 = 0"
  else
    wm=$($PG -d basin_bench -tAc "SELECT MAX(updated_at) FROM $T")
    $PG -d basin_bench -c "UPDATE $T SET status = 'changed', updated_at = TIMESTAMP '$wm' + interval '1 hour' WHERE id % 100 = 0"
  fi
  read -r u_t u_m < <(measure "$BASIN" -C "$WORK/p" ingest ${kind}_incr); row "basin ingest (incremental, 1% = $one changed)" "$u_t" "$u_m"
  grep -E "^ok|FAILED" "$WORK/out" | sed 's/^/   /'
  printf "   incremental after 1%% changed / full snapshot: %.1f%%\n" "$(echo "100 * $u_t / $b_t" | bc -l)"
  # The server's own floor for that increment: the raw client reading the same window, after
  # Basin (whichever reads first pays for the changed rows' pages: hint bits, the buffer pool).
  if [ $kind = mysql ]; then
    read -r w_t w_m < <(measure $MY --quick basin_bench -e "SELECT * FROM $T WHERE updated_at >= TIMESTAMP '$wm' - INTERVAL 5 MINUTE")
  else
    read -r w_t w_m < <(measure $PG -d basin_bench -c "COPY (SELECT * FROM $T WHERE updated_at >= TIMESTAMP '$wm' - interval '5 minutes') TO STDOUT")
  fi
  row "raw client, the increment's window" "$w_t" "$w_m"
  printf "   raw client's window / full snapshot: %.1f%%\n" "$(echo "100 * $w_t / $b_t" | bc -l)"
done
