"""psycopg 3 and psycopg2 against `basin serve` as the analyst: SCRAM, masked rows, server-side
parameters, prepared statements, SQLSTATEs, a cancel and a statement timeout, COPY TO STDOUT,
and the read-only endpoint refusing writes, files and engine settings."""
import os
import sys
import tempfile
import threading

import psycopg
import psycopg2

port = int(sys.argv[1])
dsn = f"host=127.0.0.1 port={port} dbname=basin user=ana password=analyst-pw sslmode=disable"
LONG = "SELECT count(*) FROM generate_series(1, 20000000000) AS t(x) WHERE x % 7 = 3"

with psycopg.connect(dsn, autocommit=True) as c:
    rows = c.execute("SELECT id, email FROM silver.customer ORDER BY id").fetchall()
    assert rows == [(1, "****@acme.com"), (2, "****@x.org"), (3, None)], rows
    assert c.execute("SELECT name FROM silver.customer WHERE id = %s", (2,)).fetchone() == ("Bob",)
    for _ in range(6):
        row = c.execute("SELECT email FROM silver.customer WHERE id = %s", (1,), prepare=True).fetchone()
        assert row == ("****@acme.com",), row
    try:
        c.execute("SELECT * FROM silver.secret")
        raise SystemExit("silver.secret was readable")
    except psycopg.errors.InsufficientPrivilege:
        pass
    assert c.execute("SELECT 1").fetchone()[0] == 1, "the connection goes on after an error"

    # Exports come to the client (psycopg's copy API), masked.
    with c.cursor().copy("COPY (SELECT id, email FROM silver.customer ORDER BY id) TO STDOUT WITH (FORMAT csv)") as copy:
        exported = b"".join(bytes(block) for block in copy)
    assert exported == b"1,****@acme.com\n2,****@x.org\n3,\n", exported

    # Read-only: writes, server files and engine settings are refused, nothing is written.
    marker = tempfile.mkdtemp()
    for sql, error in [
        (f"COPY (SELECT 1) TO '{marker}/x.csv'", psycopg.errors.InsufficientPrivilege),
        ("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'", psycopg.errors.InsufficientPrivilege),
        ("INSERT INTO silver.customer VALUES (9, 'x', 'y')", psycopg.errors.InsufficientPrivilege),
        ("SET datafusion.execution.batch_size = 1", psycopg.errors.InsufficientPrivilege),
        ("SELECT * FROM read_csv('/etc/passwd')", psycopg.errors.InsufficientPrivilege),
        (f"SELECT 1; COPY (SELECT 1) TO '{marker}/y.csv'", psycopg.errors.InsufficientPrivilege),
        ("PREPARE p AS SELECT 1", psycopg.errors.FeatureNotSupported),
    ]:
        try:
            c.execute(sql)
            raise SystemExit(f"not refused: {sql}")
        except error:
            pass
    assert os.listdir(marker) == [], os.listdir(marker)
    assert c.execute("SELECT current_user").fetchone()[0] == "ana"

    # A cancel request stops a running statement; the connection stays usable.
    timer = threading.Timer(1.0, c.cancel)
    timer.start()
    try:
        c.execute(LONG)
        raise SystemExit("the statement was not canceled")
    except psycopg.errors.QueryCanceled as e:
        assert "user request" in str(e), e
    assert c.execute("SELECT 2").fetchone()[0] == 2

    # A statement timeout set by the client.
    c.execute("SET statement_timeout = '500ms'")
    try:
        c.execute(LONG)
        raise SystemExit("the statement did not time out")
    except psycopg.errors.QueryCanceled as e:
        assert "timeout" in str(e), e

with psycopg2.connect(dsn) as c2:
    cur = c2.cursor()
    cur.execute("SELECT name, email FROM silver.customer WHERE id = %s", (2,))
    assert cur.fetchall() == [("Bob", "****@x.org")]
print("ok")
