//! A process killed with SIGKILL in the middle of a `table` materialisation leaves the table at
//! its previous version: readable, complete, with no partial data. Killed at several moments.

use std::time::{Duration, Instant};

use crate::support::Basin;

const SMALL: &str = "SELECT value AS id, value * 2 AS x, repeat('x', 40) AS pad FROM generate_series(1, 1000)";
const LARGE: &str = "SELECT value AS id, value * 2 AS x, repeat('x', 40) AS pad FROM generate_series(1, 2000000)";

/// What `state` shows once LARGE is committed.
const LARGE_STATE: &str = "n,s;2000000,2000001000000";

fn state(b: &Basin) -> (String, String) {
    let count = b.sql("SELECT COUNT(*) AS n, SUM(id) AS s FROM silver.big").join(";");
    let version = b
        .cmd(&["history", "silver.big", "--limit", "1"])
        .success()
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (count, version.split_whitespace().next().unwrap_or_default().to_string())
}

#[test]
fn sigkill_during_a_table_write_leaves_the_previous_version() {
    let b = Basin::empty();
    b.write("models/silver/big.sql", SMALL);
    b.cmd(&["run"]).success();
    let (before, version) = state(&b);
    assert_eq!(before, "n,s;1000,500500");
    assert_eq!(version, "0");

    b.write("models/silver/big.sql", LARGE);
    let mut killed_mid_write = 0;
    for delay_ms in [150, 300, 500, 750, 1000, 1800, 2600] {
        let mut child = b
            .command(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(delay_ms) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if child.try_wait().unwrap().is_some() {
            // Finished before the kill: the new version is complete. Start again from SMALL
            // (a shrink from 2M rows to 1000, which the guardrail wants allowed).
            b.write("models/silver/big.sql", SMALL);
            b.cmd(&["run", "--allow-shrink"]).success();
            b.write("models/silver/big.sql", LARGE);
            continue;
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let (after, _) = state(&b);
        if after == LARGE_STATE {
            // Killed after the commit (while the run was being recorded): the new version,
            // whole. Start again from SMALL.
            b.write("models/silver/big.sql", SMALL);
            b.cmd(&["run", "--allow-shrink"]).success();
            b.write("models/silver/big.sql", LARGE);
            continue;
        }
        killed_mid_write += 1;
        assert_eq!(after, before, "killed after {delay_ms} ms: the table must show the previous version, whole");
    }
    assert!(killed_mid_write >= 3, "only {killed_mid_write} kills landed mid-write; the test proves nothing");

    // Files a killed writer left behind do not disturb the next run.
    b.cmd(&["run"]).success();
    assert_eq!(state(&b).0, LARGE_STATE);
}
