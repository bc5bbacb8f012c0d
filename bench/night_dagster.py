#!/usr/bin/env python3
"""The peer of Basin's night in bench/night.sh: the same night as a data team builds it today
with Dagster, ConnectorX and DuckDB.

    python3 bench/night_dagster.py PROJECT_DIR SOURCE_URL OUT_DIR

One Dagster asset per source table of PROJECT_DIR/sources/v3.toml: ConnectorX reads it from
SOURCE_URL (MariaDB) into Arrow and writes Parquet under OUT_DIR/bronze — a full table as a new
snapshot, an incremental one as the rows past its watermark minus its lag (the watermark kept in
OUT_DIR/state.json, fixed before reading, as Basin does). One Dagster asset per model of
PROJECT_DIR/models: its SQL, unchanged, run by DuckDB over `bronze_current` views (the latest
snapshot; the newest row of each key for incremental tables) and written to Parquet (an scd2
model as a plain table: one version per key, as the team's DuckDB models do it). Each asset's
checks from the model header (and the gold `row_count`) are Dagster asset checks evaluated in
DuckDB. Everything is materialised in one process (`dagster.materialize`, in-process
executor); the script prints the seconds the night took and what it landed.
"""
import json
import os
import re
import sys
import time
import tomllib

import connectorx as cx
import duckdb
import pyarrow.parquet as pq
from dagster import AssetCheckResult, AssetCheckSpec, AssetKey, AssetsDefinition, Output, asset, materialize

PROJECT, SOURCE, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
CON = duckdb.connect()
CON.execute("CREATE SCHEMA IF NOT EXISTS bronze_current; CREATE SCHEMA IF NOT EXISTS silver; "
            "CREATE SCHEMA IF NOT EXISTS gold")
STATE_FILE = os.path.join(OUT, "state.json")
STATE = json.load(open(STATE_FILE)) if os.path.exists(STATE_FILE) else {}
DB = SOURCE.rsplit("/", 1)[1]


def lag_seconds(text):
    n, unit = int(text[:-1]), text[-1]
    return n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def primary_key(table):
    rows = cx.read_sql(SOURCE, f"SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = "
                               f"'{DB}' AND TABLE_NAME = '{table}' AND CONSTRAINT_NAME = 'PRIMARY' "
                               f"ORDER BY ORDINAL_POSITION", return_type="arrow")
    return rows.column(0).to_pylist()


def select_list(table):
    """Every column, with MariaDB's zero dates as NULL: ConnectorX cannot read them."""
    cols = cx.read_sql(SOURCE, f"SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                               f"'{DB}' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION", return_type="arrow")
    out = []
    for name, kind in zip(cols.column(0).to_pylist(), cols.column(1).to_pylist()):
        if kind in ("date", "datetime", "timestamp"):
            out.append(f"NULLIF(`{name}`, '0000-00-00') AS `{name}`" if kind == "date"
                       else f"NULLIF(`{name}`, '0000-00-00 00:00:00') AS `{name}`")
        else:
            out.append(f"`{name}`")
    return ", ".join(out)


def run_checks(relation, checks):
    for c in checks:
        kind, name = c["type"], c.get("name") or c["type"]
        if kind == "not_null":
            cond = " OR ".join(f'"{x}" IS NULL' for x in c["columns"])
            bad = CON.execute(f"SELECT count(*) FROM {relation} WHERE {cond}").fetchone()[0]
        elif kind == "unique":
            cols = ", ".join(f'"{x}"' for x in c["columns"])
            bad = CON.execute(f"SELECT count(*) FROM (SELECT {cols} FROM {relation} GROUP BY {cols} "
                              f"HAVING count(*) > 1)").fetchone()[0]
        elif kind == "accepted_values":
            values = ", ".join(f"'{v}'" for v in c["values"])
            bad = CON.execute(f"SELECT count(*) FROM {relation} WHERE \"{c['column']}\" NOT IN ({values})").fetchone()[0]
        elif kind == "null_rate":
            rate = CON.execute(f"SELECT avg(CASE WHEN \"{c['columns'][0]}\" IS NULL THEN 1 ELSE 0 END) "
                               f"FROM {relation}").fetchone()[0] or 0
            bad = int(rate > c["max"])
        elif kind == "expression":
            bad = CON.execute(f"SELECT count(*) FROM {relation} WHERE NOT ({c['expression']})").fetchone()[0]
        elif kind == "relationships":
            col = c["column"]
            bad = CON.execute(f"SELECT count(*) FROM {relation} WHERE \"{col}\" IS NOT NULL AND \"{col}\" NOT IN "
                              f"(SELECT \"{col}\" FROM {c['to']})").fetchone()[0]
        elif kind == "row_count":
            bad = int(CON.execute(f"SELECT count(*) FROM {relation}").fetchone()[0] < c.get("min", 0))
        else:  # schema contracts: DuckDB's types differ; not judged here
            bad = 0
        yield AssetCheckResult(check_name=name, passed=bad == 0, metadata={"failing": int(bad)},
                               severity=_severity(c))


def _severity(c):
    from dagster import AssetCheckSeverity
    return AssetCheckSeverity.WARN if c.get("severity") == "warn" else AssetCheckSeverity.ERROR


def check_names(checks):
    names, out = set(), []
    for c in checks:
        name = c["type"] + "_" + "_".join(c.get("columns", [c.get("column", str(len(out)))]))
        while name in names:
            name += "_"
        names.add(name)
        c["name"] = name
        out.append(c)
    return out


def bronze_asset(source, table):
    name, mode = table["name"], table.get("mode", source.get("defaults", {}).get("mode", "full"))
    checks = check_names(table.get("checks", []))
    key = AssetKey(["bronze", f"v3__{name}"])

    @asset(key=key, check_specs=[AssetCheckSpec(c["name"], asset=key) for c in checks])
    def land():
        folder = os.path.join(OUT, "bronze", name)
        os.makedirs(folder, exist_ok=True)
        cols = select_list(name)
        if mode == "incremental":
            cursor, lag = table["cursor"], lag_seconds(table.get("lag", "0s"))
            upper = cx.read_sql(SOURCE, f"SELECT MAX(`{cursor}`) FROM `{name}`", return_type="arrow").column(0)[0].as_py()
            watermark = STATE.get(name)
            where = f"`{cursor}` <= '{upper}'"
            if watermark is not None:
                lower = (f"'{watermark}' - INTERVAL {lag} SECOND" if not str(watermark).isdigit()
                         else f"{int(watermark) - lag}")
                where += f" AND `{cursor}` > {lower}"
            data = cx.read_sql(SOURCE, f"SELECT {cols} FROM `{name}` WHERE {where}", return_type="arrow")
            part = len([f for f in os.listdir(folder) if f.endswith(".parquet")])
            pq.write_table(data, os.path.join(folder, f"part-{part:05}.parquet"))
            STATE[name] = str(upper)
            pk = ", ".join(f'"{c}"' for c in primary_key(name))
            files = os.path.join(folder, "*.parquet")
            CON.execute(f"CREATE OR REPLACE VIEW bronze_current.v3__{name} AS SELECT * FROM read_parquet('{files}') "
                        f"QUALIFY row_number() OVER (PARTITION BY {pk} ORDER BY \"{cursor}\" DESC) = 1")
        else:
            data = cx.read_sql(SOURCE, f"SELECT {cols} FROM `{name}`", return_type="arrow")
            path = os.path.join(folder, "snapshot.parquet")
            pq.write_table(data, path)
            CON.execute(f"CREATE OR REPLACE VIEW bronze_current.v3__{name} AS SELECT * FROM read_parquet('{path}')")
        yield Output(None, metadata={"rows": data.num_rows})
        yield from run_checks(f"bronze_current.v3__{name}", checks)

    return land


def model_asset(schema, name, sql, extra_checks):
    header = sql.split("*/", 1)[0] if sql.lstrip().startswith("/* basin") else ""
    config = tomllib.loads(header.split("/* basin", 1)[1]) if header else {}
    checks = check_names(config.get("checks", []) + extra_checks)
    refs = sorted(set(re.findall(r"\b(bronze_current|silver|gold)\.([a-z0-9_]+)", sql)))
    deps = [AssetKey(["bronze" if s == "bronze_current" else s, n]) for s, n in refs if (s, n) != (schema, name)]
    if config.get("materialized") == "scd2":
        updated_at = config.get("updated_at", "updated_at")
        sql = (f'SELECT *, CAST("{updated_at}" AS TIMESTAMP) AS valid_from, CAST(NULL AS TIMESTAMP) AS valid_to, '
               f"TRUE AS is_current FROM ({sql}\n) AS input")
    key = AssetKey([schema, name])

    @asset(key=key, deps=deps, check_specs=[AssetCheckSpec(c["name"], asset=key) for c in checks])
    def build():
        folder = os.path.join(OUT, schema)
        os.makedirs(folder, exist_ok=True)
        target = os.path.join(folder, name + ".parquet")
        CON.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet)")
        CON.execute(f"CREATE OR REPLACE VIEW {schema}.{name} AS SELECT * FROM read_parquet('{target}')")
        rows = CON.execute(f"SELECT count(*) FROM {schema}.{name}").fetchone()[0]
        yield Output(None, metadata={"rows": rows})
        yield from run_checks(f"{schema}.{name}", checks)

    return build


def definitions():
    with open(os.path.join(PROJECT, "sources", "v3.toml"), "rb") as f:
        source = tomllib.load(f)
    assets = [bronze_asset(source, t) for t in source["tables"]]
    for schema in ("silver", "gold"):
        folder = os.path.join(PROJECT, "models", schema)
        for file in sorted(os.listdir(folder)):
            extra = [{"type": "row_count", "min": 1}] if schema == "gold" else []
            assets.append(model_asset(schema, file[:-4], open(os.path.join(folder, file)).read(), extra))
    return assets


def main():
    started = time.perf_counter()
    os.makedirs(OUT, exist_ok=True)
    assets: list[AssetsDefinition] = definitions()
    result = materialize(assets)
    if not result.success:
        sys.exit("the Dagster night failed")
    with open(STATE_FILE, "w") as f:
        json.dump(STATE, f)
    failed = [e.asset_check_evaluation_data.check_name for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed]
    print(f"{len(assets)} assets materialised; failed checks: {failed or 'none'}", file=sys.stderr)
    print(f"{time.perf_counter() - started:.2f}")


if __name__ == "__main__":
    main()
