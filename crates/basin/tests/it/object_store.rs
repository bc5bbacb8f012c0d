//! `files` sources on an object store: CSV objects in an S3 bucket served by moto's S3 API
//! server, landed incrementally (each object once) with the options of the source file. Skipped
//! (with a message) where Python or moto is missing, except under CI, where that is a failure.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Basin;

/// A moto S3 server on a free port, stopped when dropped.
struct S3 {
    child: Child,
    endpoint: String,
    python: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    fn start() -> Option<S3> {
        let python = std::env::var("BASIN_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let ok =
            Command::new(&python).args(["-c", "import moto.server, boto3"]).output().is_ok_and(|o| o.status.success());
        if !ok {
            let reason = format!("`{python} -c 'import moto.server, boto3'` failed; run `pip install 'moto[server]'`");
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true and the S3 API server is missing: {reason}");
            }
            eprintln!("skipped: {reason}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s3 = S3 { child, endpoint: format!("http://127.0.0.1:{port}"), python };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(s3)
    }

    /// Put `text` at `key` of `bucket`, creating the bucket if needed.
    fn put(&self, bucket: &str, key: &str, text: &str) {
        let script = r#"
import sys, boto3
s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',
                  aws_access_key_id='basin', aws_secret_access_key='basin')
if sys.argv[2] not in [b['Name'] for b in s3.list_buckets()['Buckets']]:
    s3.create_bucket(Bucket=sys.argv[2])
s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=sys.argv[4].encode())
"#;
        let out = Command::new(&self.python).args(["-c", script, &self.endpoint, bucket, key, text]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn csv_objects_in_an_s3_bucket_land_each_once() {
    let Some(s3) = S3::start() else { return };
    s3.put("landing", "orders/2024-03-01.csv", "id,amount\n1,10.50\n2,20.00\n");
    s3.put("landing", "orders/2024-03-02.csv", "id,amount\n3,30.25\n");
    // Neither matches `orders/*.csv`: another folder, another extension.
    s3.put("landing", "orders/archive/2023-12-31.csv", "id,amount\n99,1\n");
    s3.put("landing", "orders/readme.txt", "not data");
    let b = Basin::empty();
    b.write(
        "sources/drop.toml",
        &format!(
            "kind = \"files\"\n\
             options = {{ endpoint = \"{}\", allow_http = \"true\", region = \"us-east-1\",\n\
                         access_key_id = \"basin\", secret_access_key = \"${{DROP_SECRET}}\" }}\n\n\
             [[tables]]\nname = \"orders\"\npath = \"s3://landing/orders/*.csv\"\nmode = \"incremental\"\n\
             [tables.columns.amount]\ntype = \"decimal(10,2)\"\n",
            s3.endpoint
        ),
    );
    let ingest = || b.command(&["ingest", "drop"]).env("DROP_SECRET", "basin").output().unwrap();
    let sql = |query: &str| {
        let out = b.command(&["sql", "--format", "csv", query]).env("DROP_SECRET", "basin").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect::<Vec<_>>()
    };

    let first = ingest();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&first.stderr));
    assert!(stdout.contains("new files (2): 3 rows landed"), "{stdout}");
    assert!(!stdout.contains("DROP_SECRET") && !stdout.contains("secret_access_key"), "{stdout}");

    let again = ingest();
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 rows landed"), "an object is not landed twice");

    s3.put("landing", "orders/2024-03-03.csv", "id,amount\n4,0.01\n");
    let third = ingest();
    let stdout = String::from_utf8_lossy(&third.stdout);
    assert!(stdout.contains("new files (1): 1 rows landed"), "{stdout}");
    assert_eq!(
        sql("SELECT id, amount, _file FROM bronze.drop__orders ORDER BY id"),
        [
            "id,amount,_file",
            "1,10.50,2024-03-01.csv",
            "2,20.00,2024-03-01.csv",
            "3,30.25,2024-03-02.csv",
            "4,0.01,2024-03-03.csv"
        ]
    );

    // A malformed object fails the table, naming its URL and line; nothing of it lands.
    s3.put("landing", "orders/2024-03-04.csv", "id,amount\n5,1.00\n6,lots\n");
    let bad = ingest();
    assert!(!bad.status.success());
    let out = format!("{}{}", String::from_utf8_lossy(&bad.stdout), String::from_utf8_lossy(&bad.stderr));
    assert!(out.contains("s3://landing/orders/2024-03-04.csv") && out.contains("line 3"), "{out}");
    assert_eq!(sql("SELECT COUNT(*) AS n FROM bronze.drop__orders"), ["n", "4"]);
}
