"""`basin serve` under load, against DuckDB and chDB over the same Parquet files.

    python3 bench/serve_bench.py PROJECT_DIR PG_PORT

1. Point lookups by key over the wire: 8 client threads, each with its own psycopg
   connection and a prepared statement (`WHERE invoice_item_id = %s`, random existing keys)
   on silver.fact_invoice_item; p50 / p99 latency and queries per second.
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

project, port = sys.argv[1], int(sys.argv[2])
dsn = f"host=127.0.0.1 port={port} dbname=basin user=eng password=bench sslmode=disable"
table = os.path.join(project, "lake", "silver", "fact_invoice_item")

with psycopg.connect(dsn, autocommit=True) as c:
    rows, lo, hi = c.execute(
        "SELECT COUNT(*), MIN(invoice_item_id), MAX(invoice_item_id) FROM silver.fact_invoice_item"
    ).fetchone()
print(f"silver.fact_invoice_item: {rows:,} rows")

THREADS, PER_THREAD, WARMUP = 8, 250, 20
latencies = []
lock = threading.Lock()


def client(seed):
    rng = random.Random(seed)
    mine = []
    with psycopg.connect(dsn, autocommit=True) as c:
        q = "SELECT invoice_item_id, amount, charge_type FROM silver.fact_invoice_item WHERE invoice_item_id = %s"
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
    f"point lookups, {THREADS} clients: p50 {p(0.50):.2f} ms, p99 {p(0.99):.2f} ms, "
    f"{len(latencies) / wall:.0f} queries/s (incl. warm-up) over {len(latencies)} timed queries"
)

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

files = deltalake.DeltaTable(table).file_uris()
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
