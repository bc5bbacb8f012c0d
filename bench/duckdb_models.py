"""The demo project's silver and gold models, run by DuckDB over Basin's bronze Parquet files.

    python3 bench/duckdb_models.py PROJECT_DIR OUT_DIR

Each bronze table is read from the Parquet files of its current Delta version (listed by the
`deltalake` package) and exposed as `bronze_current.<table>` with the same definition Basin
uses: the latest snapshot for `full` tables, the row with the key's highest cursor for
`incremental` ones. Then every model's SQL, unchanged (an scd2 model as its first build:
one open version per key), is written to Parquet (`COPY ... TO`) in dependency order
(silver, then gold), as Basin writes Delta tables. Prints the seconds the models took.
"""
import glob
import json
import os
import re
import sys
import time

import deltalake
import duckdb

META = {"_run_id", "_extracted_at", "_source", "_ingestion_date"}


def main(project, out):
    con = duckdb.connect()
    con.execute("CREATE SCHEMA bronze_current; CREATE SCHEMA silver; CREATE SCHEMA gold")
    for path in sorted(glob.glob(os.path.join(project, "lake", "bronze", "*"))):
        name = os.path.basename(path)
        dt = deltalake.DeltaTable(path)
        how = next(json.loads(c["basin.bronze"]) if isinstance(c["basin.bronze"], str) else c["basin.bronze"]
                   for c in dt.history() if "basin.bronze" in c)
        files = dt.file_uris()
        cols = [f.name for f in dt.schema().fields if f.name not in META]
        listed = ", ".join(f'"{c}"' for c in cols)
        src = f"read_parquet({files!r}, hive_partitioning = true)"
        if how.get("mode") == "incremental" and how.get("primary_key"):
            keys = [f'"{c}"' for c in how["primary_key"]]
            pk, cur = ", ".join(keys), f'"{how["cursor"]}"'
            on = " AND ".join(f"t.{k} = latest.{k}" for k in keys)
            qualified = ", ".join(f't."{c}"' for c in cols)
            sql = (f"SELECT {qualified} FROM {src} AS t JOIN (SELECT {pk}, max({cur}) AS m FROM {src} GROUP BY {pk}) "
                   f"AS latest ON {on} AND t.{cur} = latest.m")
        else:
            sql = f"SELECT {listed} FROM {src} WHERE _ingestion_date = (SELECT max(_ingestion_date) FROM {src})"
        con.execute(f"CREATE VIEW bronze_current.{name} AS {sql}")

    started = time.perf_counter()
    for schema in ("silver", "gold"):
        os.makedirs(os.path.join(out, schema), exist_ok=True)
        for model in sorted(glob.glob(os.path.join(project, "models", schema, "*.sql"))):
            name = os.path.basename(model)[:-4]
            target = os.path.join(out, schema, name + ".parquet")
            sql = open(model).read()
            header = sql.split("*/", 1)[0]
            if 'materialized = "scd2"' in header:
                # DuckDB has no scd2: the first build's output, one open version per key.
                updated_at = re.search(r'updated_at = "([^"]+)"', header).group(1)
                sql = (f'SELECT *, CAST("{updated_at}" AS TIMESTAMP) AS valid_from, '
                       f"CAST(NULL AS TIMESTAMP) AS valid_to, TRUE AS is_current FROM ({sql}\n) AS input")
            t = time.perf_counter()
            con.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet)")
            con.execute(f"CREATE VIEW {schema}.{name} AS SELECT * FROM read_parquet('{target}')")
            print(f"  duckdb {schema}.{name}: {time.perf_counter() - t:.2f}s", file=sys.stderr)
    print(f"{time.perf_counter() - started:.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
