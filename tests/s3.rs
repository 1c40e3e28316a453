//! The lake and file drops on S3, against a real S3-compatible server (moto, installed by
//! `.ci/setup`) that each test starts on a free loopback port and stops when it ends.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Out;

pub struct Moto {
    child: Child,
    pub endpoint: String,
    host: String,
}

impl Moto {
    pub fn start() -> Self {
        let bin = std::env::var_os("CSLAKE_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default())
                    .join(".cache/cslake-moto/bin/moto_server")
            });
        assert!(
            bin.exists(),
            "the S3 test server is not installed: run .ci/setup (it puts moto into ~/.cache/cslake-moto), \
             or point CSLAKE_MOTO_SERVER at a moto_server"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let host = format!("127.0.0.1:{port}");
        let started = Instant::now();
        while TcpStream::connect(&host).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            endpoint: format!("http://{host}"),
            host,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A plain HTTP request (moto does not check signatures); returns the status code.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> u16 {
        let mut s = TcpStream::connect(&self.host).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.host,
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).ok();
        out.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// Uploads every file under `dir` to `bucket/prefix/…`.
    pub fn upload(&self, dir: &Path, bucket: &str, prefix: &str) -> usize {
        let files = crate::files_under(dir);
        for p in &files {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().replace('\\', "/");
            let status = self.request(
                "PUT",
                &format!("/{bucket}/{prefix}/{rel}"),
                &std::fs::read(p).unwrap(),
            );
            assert_eq!(status, 200, "upload {rel}");
        }
        files.len()
    }

    /// `cslake` with the standard AWS variables pointing at this server.
    pub fn cslake(&self, dir: &Path, args: &[&str]) -> Out {
        crate::cslake_env(dir, args, &aws_env(&self.endpoint))
    }

    /// The standard AWS variables pointing at this server, for processes started otherwise.
    pub fn env(&self) -> [(&'static str, &str); 5] {
        aws_env(&self.endpoint)
    }

    /// The same, started in the background.
    pub fn spawn(&self, dir: &Path, args: &[&str]) -> std::process::Child {
        crate::spawn(dir, args, &aws_env(&self.endpoint))
    }
}

/// The standard AWS variables for an S3-compatible server at `endpoint` (moto accepts any keys).
fn aws_env(endpoint: &str) -> [(&'static str, &str); 5] {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
    ]
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[test]
fn the_lake_and_a_file_drop_on_s3_end_to_end() {
    let s3 = Moto::start();
    for bucket in ["lake", "drops"] {
        assert_eq!(s3.request("PUT", &format!("/{bucket}"), b""), 200);
    }
    let (_tmp, dir) = crate::workspace(40, 60, "2026-03-31");
    let dir = dir.as_path();
    let files = s3.upload(&dir.join("data"), "drops", "exports/2026-03-31");
    assert!(files >= 8, "{files} files");

    let lake = ["--lake", "s3://lake/prod"];
    let ingest = |extra: &[&str]| {
        let args: Vec<&str> = lake
            .iter()
            .chain(&["ingest", "--source", "s3://drops/exports"])
            .chain(extra)
            .copied()
            .collect();
        s3.cslake(dir, &args).ok().summary()
    };
    let first = ingest(&[]);
    assert_eq!(first["rejected"], 0, "{first}");
    assert!(first["read"].as_u64().unwrap() > 1000, "{first}");
    assert_eq!(ingest(&[])["read"], 0, "unchanged objects are not read again");

    let q = |sql: &str| -> Vec<String> {
        let args: Vec<&str> = lake
            .iter()
            .copied()
            .chain(["query", sql, "--format", "csv"])
            .collect();
        s3.cslake(dir, &args)
            .ok()
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(q("SELECT COUNT(*) AS n FROM core.accounts"), ["n", "40"]);
    let args: Vec<&str> = lake
        .iter()
        .copied()
        .chain(["features", "--as-of", "2026-03-31"])
        .collect();
    s3.cslake(dir, &args).ok();
    let rows = q("SELECT COUNT(*) AS n FROM features.usage_activity WHERE as_of_date = DATE '2026-03-31'");
    assert!(rows[1].parse::<u64>().unwrap() > 0, "{rows:?}");

    // two writers at once into a fresh lake: the second waits for the first's lease (held in
    // the bucket, created with If-None-Match), and nothing is duplicated
    let fresh = [
        "--lake",
        "s3://lake/concurrent",
        "ingest",
        "--source",
        "s3://drops/exports",
    ];
    let (a, b) = (s3.spawn(dir, &fresh), s3.spawn(dir, &fresh));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "both writers finish: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let qf = |sql: &str| -> Vec<String> {
        let out = s3
            .cslake(
                dir,
                &["--lake", "s3://lake/concurrent", "query", sql, "--format", "csv"],
            )
            .ok();
        out.stdout.lines().map(str::to_string).collect()
    };
    assert_eq!(
        qf("SELECT COUNT(*) - COUNT(DISTINCT event_id) AS duplicates FROM core.usage_events"),
        ["duplicates", "0"]
    );
    assert_eq!(
        qf("SELECT COUNT(*) AS n FROM core.usage_events"),
        q("SELECT COUNT(*) AS n FROM core.usage_events")
    );
    assert_eq!(qf("SELECT COUNT(*) AS n FROM core.accounts"), ["n", "40"]);

    // credentials from a named profile of the shared AWS files, as the AWS CLI reads them
    std::fs::create_dir_all(dir.join(".aws")).unwrap();
    std::fs::write(
        dir.join(".aws/credentials"),
        "[default]\naws_access_key_id = nope\n\n[cslake]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    std::fs::write(dir.join(".aws/config"), "[profile cslake]\nregion = us-east-1\n").unwrap();
    let home = dir.display().to_string();
    let count = |env: &[(&str, &str)]| {
        crate::cslake_env(
            dir,
            &[
                "--lake",
                "s3://lake/prod",
                "query",
                "SELECT COUNT(*) AS n FROM core.accounts",
                "--format",
                "csv",
            ],
            env,
        )
    };
    let out = count(&[
        ("HOME", home.as_str()),
        ("AWS_PROFILE", "cslake"),
        ("AWS_ENDPOINT_URL", &s3.endpoint),
        ("AWS_ALLOW_HTTP", "true"),
    ])
    .ok();
    assert_eq!(out.stdout.lines().nth(1), Some("40"));

    // the AWS SDK's chain, as the AWS CLI resolves it: a credential_process profile, and a profile
    // that assumes a role (through moto's STS) from another one's keys
    let script = dir.join("credentials.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"testing\", \"SecretAccessKey\": \"testing\"}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join(".aws/config"),
        format!(
            "[profile cslake]\nregion = us-east-1\n\n[profile proc]\nregion = us-east-1\ncredential_process = {}\n\n\
             [profile role]\nregion = us-east-1\nrole_arn = arn:aws:iam::123456789012:role/cslake-reader\nsource_profile = cslake\n",
            script.display()
        ),
    )
    .unwrap();
    for profile in ["proc", "role"] {
        let out = count(&[
            ("HOME", home.as_str()),
            ("AWS_PROFILE", profile),
            ("AWS_ENDPOINT_URL", &s3.endpoint),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        assert_eq!(out.code, 0, "{profile}: {}", out.stderr);
        assert_eq!(out.stdout.lines().nth(1), Some("40"), "{profile}");
    }
    // no credentials anywhere: a configuration error naming what was tried, not an IMDS 403
    let empty = dir.join("empty-home");
    std::fs::create_dir_all(&empty).unwrap();
    let none = count(&[
        ("HOME", empty.to_str().unwrap()),
        ("AWS_ENDPOINT_URL", &s3.endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]);
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(
        none.stderr.contains("no AWS credentials for s3://lake/prod")
            && none.stderr.contains("credential_process")
            && none.stderr.contains("instance metadata"),
        "{}",
        none.stderr
    );
}

#[test]
fn an_s3_outage_is_ridden_out_or_fails_cleanly_and_reruns_cleanly() {
    let (_tmp, dir) = crate::workspace(30, 60, "2026-03-31");
    let dir = dir.as_path();
    let lake = |args: &[&str]| -> Vec<String> {
        ["--lake", "s3://lake/prod"]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect()
    };
    let run = |s3: &Moto, args: &[&str]| {
        let a = lake(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        s3.cslake(dir, &a)
    };
    let s3 = Moto::start();
    assert_eq!(s3.request("PUT", "/lake", b""), 200);
    run(&s3, &["ingest", "--source", "data"]).ok();

    // the server freezes for a while mid-command: requests wait and the command finishes
    let pid = s3.pid().to_string();
    let a = lake(&["features", "--as-of", "2026-03-31"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let child = s3.spawn(dir, &a);
    std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // the server is gone: bounded retries, then a clean failure naming the storage error
    std::fs::write(
        dir.join("cslake.toml"),
        "[storage]\nmax_retries = \"2\"\nretry_timeout = \"5s\"\n",
    )
    .unwrap();
    let endpoint = s3.endpoint.clone();
    drop(s3);
    let out = crate::cslake_env(
        dir,
        &["--lake", "s3://lake/prod", "features", "--as-of", "2026-03-31"],
        &aws_env(&endpoint),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("error: "), "{}", out.stderr);
    // without max_retries, refused connections are retried for the whole retry_timeout
    std::fs::write(dir.join("cslake.toml"), "[storage]\nretry_timeout = \"6s\"\n").unwrap();
    let started = std::time::Instant::now();
    let out = crate::cslake_env(
        dir,
        &["--lake", "s3://lake/prod", "features", "--as-of", "2026-03-31"],
        &aws_env(&endpoint),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "gave up after {:?}",
        started.elapsed()
    );

    // a new server (moto keeps nothing across restarts): the day runs again from the source
    let s3 = Moto::start();
    assert_eq!(s3.request("PUT", "/lake", b""), 200);
    run(&s3, &["ingest", "--source", "data"]).ok();
    run(&s3, &["features", "--as-of", "2026-03-31"]).ok();
    let n = run(
        &s3,
        &[
            "query",
            "SELECT COUNT(*) AS n FROM core.accounts",
            "--format",
            "csv",
        ],
    )
    .ok();
    assert_eq!(n.stdout.lines().nth(1), Some("30"));
}
