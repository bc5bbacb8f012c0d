//! `basin validate` on a project with many planted mistakes reports all of them, each at its
//! place, in one pass.

use crate::support::Basin;

#[test]
fn reports_every_planted_mistake_with_its_location() {
    let b = Basin::empty();
    b.write("basin.toml", "[project]\nname = \"t\"\n\n[run]\nconcurency = 4\n")
        // Header TOML syntax error.
        .write("models/silver/a_syntax.sql", "/* basin\nmaterialized = \n*/\nSELECT 1 AS x")
        // Unknown key with a suggestion, and an unknown materialisation.
        .write("models/silver/b_keys.sql", "/* basin\nmaterialized = \"tabel\"\nownr = \"me\"\n*/\nSELECT 1 AS x")
        // SQL syntax error.
        .write("models/silver/c_sql.sql", "SELECT a,\nFROM silver.b_keys z y")
        // Unknown table with a near name, and an unqualified table.
        .write("models/silver/d_refs.sql", "SELECT *\nFROM silver.b_kyes\nJOIN c_sql ON true")
        // Duplicate asset key through a header override.
        .write("models/gold/e_dup.sql", "/* basin\nschema = \"silver\"\nname = \"d_refs\"\n*/\nSELECT 1 AS x")
        // A cycle of two models.
        .write("models/gold/f_one.sql", "SELECT * FROM gold.f_two")
        .write("models/gold/f_two.sql", "SELECT * FROM gold.f_one")
        // Incremental without a key.
        .write("models/gold/g_inc.sql", "/* basin\nmaterialized = \"incremental\"\n*/\nSELECT 1 AS x");
    let before = b.files();
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok, "validate must fail");
    assert_eq!(b.files(), before, "validate writes nothing");
    let expected = [
        "basin.toml:5:1: error: unknown key `run.concurency` in basin.toml",
        "  hint: did you mean `concurrency`?",
        "models/gold/e_dup.sql: error: duplicate asset key `silver.d_refs`, also defined by models/silver/d_refs.sql",
        "models/gold/f_one.sql:1:15: error: dependency cycle: gold.f_one → gold.f_two → gold.f_one",
        "models/gold/g_inc.sql:2:1: error: an incremental model needs `unique_key` or `partition_by`",
        "models/silver/a_syntax.sql:2:16: error: TOML syntax error in the model header",
        "models/silver/b_keys.sql:2:16: error: invalid value in the model header: unknown variant `tabel`, expected one of `table`, `view`, `incremental`",
        "models/silver/b_keys.sql:3:1: error: unknown key `ownr` in the model header",
        "  hint: did you mean `owner`?",
        "models/silver/c_sql.sql:2:22: error: SQL syntax error: Expected: end of statement, found: y",
        "models/silver/d_refs.sql:2:6: error: unknown table `silver.b_kyes`",
        "  hint: did you mean `silver.b_keys`?",
        "models/silver/d_refs.sql:3:6: error: table `c_sql` is not schema-qualified",
        "  hint: did you mean `silver.c_sql`?",
    ];
    let mut lines = ran.stderr.lines();
    for want in expected {
        assert!(lines.any(|l| l.starts_with(want)), "missing, or out of order: {want}\n--- stderr\n{}", ran.stderr);
    }
    assert!(ran.stderr.contains("10 error(s), 0 warning(s)"), "{}", ran.stderr);
}

#[test]
fn a_valid_project_validates() {
    let b = Basin::init();
    let ran = b.cmd(&["validate"]).success();
    assert!(ran.stderr.contains("ok: 4 model(s), 0 warning(s)"), "{}", ran.stderr);
}

#[test]
fn missing_environment_variables_are_reported_without_the_secret() {
    let b = Basin::empty();
    b.write(
        "basin.toml",
        "[project]\nname = \"t\"\n[storage]\nroot = \"./lake\"\n[storage.options]\nsecret = \"${BASIN_TEST_UNSET_VAR}\"\ntoken = \"${BASIN_TEST_SET_VAR}\"\n",
    );
    let ran = b.command(&["validate"]).env("BASIN_TEST_SET_VAR", "hunter2").output().unwrap();
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(!ran.status.success());
    assert!(stderr.contains("basin.toml:6:"), "{stderr}");
    assert!(
        stderr.contains("`storage.options.secret` uses environment variable `BASIN_TEST_UNSET_VAR`, which is not set"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));
}

#[test]
fn serving_settings_are_checked_before_anything_listens() {
    let b = Basin::empty();
    b.write(
        "basin.toml",
        "[project]\nname = \"t\"\n\n[serve]\nlisten = \"0.0.0.0:5433\"\nallow_unauthenticated = true\n\
         unauthenticated_role = \"guest\"\n\n[users.ana]\nrole = \"analyts\"\npassword = \"hunter2\"\n\n\
         [roles.analyst]\nselect = [\"gold\", \"silver.a.b\"]\nmask = { \"pii\" = \"scramble\" }\n\
         statement_timeout = \"soon\"\n",
    );
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok, "validate must fail");
    for problem in [
        "`serve.allow_unauthenticated` is only allowed when both endpoints listen on a loopback address",
        "`serve.unauthenticated_role` names role `guest`, which no `[roles.guest]` defines",
        "`users.ana.role` names role `analyts`, which no `[roles.analyts]` defines",
        "`users.ana.password` is not a SCRAM-SHA-256 verifier; Basin never stores passwords",
        "role `analyst` grants `silver.a.b`, which is not a grant",
        "role `analyst` masks `pii` with `scramble`, which is not a masking function",
        "invalid `roles.analyst.statement_timeout`",
    ] {
        assert!(ran.stderr.contains(problem), "missing: {problem}\n{}", ran.stderr);
    }
    let serve = b.cmd(&["serve"]);
    assert!(!serve.ok && serve.stderr.contains("problem(s)"), "serve refuses the project: {}", serve.stderr);
    // An invalid project has its own exit code, for `validate` and every command it stops.
    for args in [&["validate"][..], &["serve"], &["run"]] {
        let code = b.command(args).output().unwrap().status.code();
        assert_eq!(code, Some(2), "{args:?}");
    }
}

#[test]
fn cluster_by_is_refused_on_a_view() {
    let b = Basin::empty();
    b.write("models/silver/v.sql", "/* basin\nmaterialized = \"view\"\ncluster_by = [\"id\"]\n*/\nSELECT 1 AS id");
    let ran = b.cmd(&["validate"]);
    assert!(!ran.ok);
    assert!(
        ran.stderr.contains("models/silver/v.sql:3:1: error: `cluster_by` has no meaning for a view"),
        "{}",
        ran.stderr
    );
}
