"""`basin serve` under load, against DuckDB and chDB over the same Parquet files.

    python3 bench/serve_bench.py PROJECT_DIR PG_PORT

1. Point lookups by key over the wire: 8 client threads, each with its own psycopg
   connection and a prepared statement (`WHERE invoice_item_id = %s`, random existing keys)
   on silver.fact_invoice_item; p50 / p99 latency and queries per second. The same clients
   then run the same lookups against PostgreSQL itself (the local server, or
   BASIN_BENCH_PG_DSN), over a copy of the table's three columns with a primary key: the floor
   these clients reach on this machine with a server built for point lookups.
2. An aggregate over silver.fact_invoice_item (revenue by charge type and month) through
   the endpoint, against DuckDB and chDB reading the Parquet files of the table's current
   Delta version in the same process; best of three each, result rows compared.
"""
import os
import random
import statistics
import sys
import threading
import time

import deltalake
import psycopg
import psycopg.conninfo

project, port = sys.argv[1], int(sys.argv[2])
dsn = f"host=127.0.0.1 port={port} dbname=basin user=eng password=bench sslmode=disable"
table = os.path.join(project, "lake", "silver", "fact_invoice_item")

with psycopg.connect(dsn, autocommit=True) as c:
    rows, lo, hi = c.execute(
        "SELECT COUNT(*), MIN(invoice_item_id), MAX(invoice_item_id) FROM silver.fact_invoice_item"
    ).fetchone()
print(f"silver.fact_invoice_item: {rows:,} rows")

THREADS, PER_THREAD, WARMUP = 8, 250, 20
LOOKUP = "SELECT invoice_item_id, amount, charge_type FROM {t} WHERE invoice_item_id = %s"


def lookups(label, conninfo, table):
    """8 clients, each with its own connection and prepared statement; prints and returns p50."""
    latencies, lock = [], threading.Lock()

    def client(seed):
        rng = random.Random(seed)
        mine = []
        with psycopg.connect(conninfo, autocommit=True) as c:
            q = LOOKUP.format(t=table)
            for i in range(WARMUP + PER_THREAD):
                key = rng.randint(int(lo), int(hi))
                t = time.perf_counter()
                c.execute(q, (key,), prepare=True).fetchall()
                if i >= WARMUP:
                    mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(s,)) for s in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(
        f"point lookups, {THREADS} clients, {label}: p50 {p(0.50):.2f} ms, p99 {p(0.99):.2f} ms, "
        f"{len(latencies) / wall:.0f} queries/s (incl. warm-up) over {len(latencies)} timed queries"
    )
    return p(0.50)


def postgres_copy(files):
    """A database holding the lookup columns of the table in PostgreSQL (made once per row
    count and kept, like bench/ingest.sh's), or None when no server answers."""
    admin = os.environ.get("BASIN_BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
    name = "basin_bench_serve"
    try:
        with psycopg.connect(admin, autocommit=True) as c:
            if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                c.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as e:
        print(f"PostgreSQL peer left out (no server: {e})")
        return None
    conninfo = psycopg.conninfo.make_conninfo(admin, dbname=name)
    table = f"lookup_{rows}"
    with psycopg.connect(conninfo, autocommit=True) as c:
        have = c.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
        if have and c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == rows:
            return conninfo, table
        print(f"copying {rows:,} rows into PostgreSQL for the peer lookups…")
        import pyarrow.parquet as pq

        c.execute(f"DROP TABLE IF EXISTS {table}")
        c.execute(f"CREATE TABLE {table} (invoice_item_id bigint, amount numeric, charge_type text)")
        with c.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for f in files:
                for batch in pq.ParquetFile(f.removeprefix("file://")).iter_batches(
                    columns=["invoice_item_id", "amount", "charge_type"], batch_size=65536
                ):
                    for row in zip(*(col.to_pylist() for col in batch.columns)):
                        copy.write_row(row)
        c.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (invoice_item_id)")
        c.execute(f"VACUUM ANALYZE {table}")
    return conninfo, table


basin_p50 = lookups("basin serve", dsn, "silver.fact_invoice_item")
files = deltalake.DeltaTable(table).file_uris()
peer = postgres_copy(files)
if peer:
    pg_p50 = lookups("PostgreSQL itself, same clients", *peer)
    print(f"  Basin/PostgreSQL p50: {basin_p50 / pg_p50:.2f}x")

AGG = """SELECT charge_type, date_trunc('month', invoice_date) AS month, COUNT(*) AS items,
       SUM(amount) AS revenue, AVG(quantity) AS avg_quantity
FROM {t} GROUP BY charge_type, date_trunc('month', invoice_date) ORDER BY revenue DESC"""


def best(f, n=3):
    out, times = None, []
    for _ in range(n):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


with psycopg.connect(dsn, autocommit=True) as c:
    basin_s, basin_rows = best(lambda: c.execute(AGG.format(t="silver.fact_invoice_item")).fetchall())

import duckdb

duck = duckdb.connect()
duck.execute(f"CREATE VIEW f AS SELECT * FROM read_parquet({files!r})")
duck_s, duck_rows = best(lambda: duck.execute(AGG.format(t="f")).fetchall())
results = [("Basin (basin serve, over the wire)", basin_s), ("DuckDB (in process)", duck_s)]
try:
    import chdb

    # The table has one version here (built once), so its directory holds exactly its files.
    assert len(deltalake.DeltaTable(table).history()) == 1, "chDB reads every Parquet file of the directory"
    ch_sql = AGG.format(t=f"file('{os.path.abspath(table)}/*.parquet', Parquet)").replace("date_trunc('month', invoice_date)", "toStartOfMonth(invoice_date)")
    ch_s, _ = best(lambda: chdb.query(ch_sql, "CSV"))
    results.append(("chDB (in process)", ch_s))
except ImportError:
    print("chDB not installed (pip install chdb): left out")
assert len(basin_rows) == len(duck_rows), (len(basin_rows), len(duck_rows))
print(f"aggregate over {rows:,} rows ({len(duck_rows)} groups), best of 3:")
for label, s in results:
    print(f"  {label:36} {s:7.3f} s")
print(f"  Basin/DuckDB: {basin_s / duck_s:.2f}x")
