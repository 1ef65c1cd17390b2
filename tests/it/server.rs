//! Test harness: runs the real `sightline` binary as a child process on a
//! private temporary data directory, and talks to it over its HTTP API.

use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// How long a freshly spawned server may take to write its ready file.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// How long the server may take to flush and exit after SIGTERM.
pub const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// How long ingested data may take to become visible through SQL.
pub const DATA_DEADLINE: Duration = Duration::from_secs(30);

/// One result row of `POST /api/v1/sql`, keyed by column name.
pub type Row = Map<String, Value>;

/// Calls `f` until it yields `Some`, backing off between attempts, and panics
/// when `deadline` has passed. This is the only way tests wait for something.
pub async fn poll_until<T, F, Fut>(deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(value) = f().await {
            return value;
        }
        if started.elapsed() >= deadline {
            panic!("condition not met within {deadline:?}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Like [`poll_until`], but the closure explains why it is not done yet
/// (`Err(state)`), and the last explanation is part of the panic message.
pub async fn poll_until_ok<T, E, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        match f().await {
            Ok(value) => return value,
            Err(state) => {
                if started.elapsed() >= deadline {
                    panic!("{what}: not reached within {deadline:?}; last state: {state:#?}");
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Quotes `s` as a SQL string literal.
pub fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[derive(Debug, Clone, Copy)]
struct Addrs {
    otlp_grpc: SocketAddr,
    otlp_http: SocketAddr,
    http: SocketAddr,
}

/// A running (or stopped) `sightline serve` process with its own data dir.
pub struct TestServer {
    root: tempfile::TempDir,
    child: Option<Child>,
    addrs: Option<Addrs>,
    generation: u32,
    client: reqwest::Client,
    /// Arguments added to `serve` (e.g. `--slo-dir`).
    extra_args: Vec<std::ffi::OsString>,
}

impl TestServer {
    /// Spawns a server on a new temporary data directory and waits until it
    /// has written its ready file.
    pub async fn start() -> TestServer {
        Self::start_with(|_| Vec::new()).await
    }

    /// Like [`TestServer::start`], with extra `serve` arguments made from the server's root
    /// directory (for files the server should read).
    pub async fn start_with(
        args: impl FnOnce(&std::path::Path) -> Vec<std::ffi::OsString>,
    ) -> TestServer {
        let root = tempfile::Builder::new()
            .prefix("sightline-it-")
            .tempdir()
            .expect("create temp dir");
        std::fs::create_dir_all(root.path().join("data")).expect("create data dir");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("build reqwest client");
        let mut server = TestServer {
            root,
            child: None,
            addrs: None,
            generation: 0,
            client,
            extra_args: Vec::new(),
        };
        server.extra_args = args(server.root.path());
        server.spawn().await;
        server
    }

    fn binary() -> PathBuf {
        // The contract lets a harness point tests at a prebuilt binary; by
        // default use the one Cargo built for this package.
        match std::env::var_os("SIGHTLINE_BIN") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => PathBuf::from(env!("CARGO_BIN_EXE_sightline")),
        }
    }

    fn ready_file(&self) -> PathBuf {
        self.root.path().join("ready.json")
    }

    fn log_file(&self) -> PathBuf {
        self.root
            .path()
            .join(format!("server-{}.log", self.generation))
    }

    /// The `--data-dir` the server runs on (kept across restarts).
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "server is already running");
        let ready = self.ready_file();
        match std::fs::remove_file(&ready) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove stale ready file {}: {e}", ready.display()),
        }
        self.generation += 1;
        let log = File::create(self.log_file()).expect("create server log file");
        let log_err = log.try_clone().expect("clone server log file handle");
        let child = Command::new(Self::binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--otlp-grpc-listen", "127.0.0.1:0"])
            .args(["--otlp-http-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--ready-file")
            .arg(&ready)
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", Self::binary().display()));
        self.child = Some(child);

        let log_path = self.log_file();
        let addrs = {
            let child = self.child.as_mut().expect("child just spawned");
            poll_until_ok(STARTUP_DEADLINE, "server ready file", move || {
                let state = read_ready(&ready, &mut *child, &log_path);
                std::future::ready(state)
            })
            .await
        };
        self.addrs = Some(addrs);
    }

    fn addrs(&self) -> Addrs {
        self.addrs.expect("server is not running")
    }

    pub fn otlp_grpc_addr(&self) -> SocketAddr {
        self.addrs().otlp_grpc
    }

    pub fn otlp_http_addr(&self) -> SocketAddr {
        self.addrs().otlp_http
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.addrs().http
    }

    /// `http://127.0.0.1:PORT` of the OTLP/gRPC listener (tonic endpoint).
    pub fn otlp_grpc_endpoint(&self) -> String {
        format!("http://{}", self.otlp_grpc_addr())
    }

    /// Full URL of an OTLP/HTTP path such as `/v1/traces`.
    pub fn otlp_http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.otlp_http_addr(), path)
    }

    /// Full URL of an API path such as `/api/v1/sql`.
    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http_addr(), path)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Last part of the current server log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail_of(&self.log_file())
    }

    /// Runs `q` through `POST /api/v1/sql` (JSON format) and returns the
    /// parsed answer. Panics with the server's error text on a non-200 answer.
    pub async fn sql(&self, q: &str) -> Value {
        self.try_sql(q)
            .await
            .unwrap_or_else(|e| panic!("SQL {q:?} failed: {e}"))
    }

    /// Runs `q`; a non-200 answer is an `Err` with the status and body.
    pub async fn try_sql(&self, q: &str) -> Result<Value, String> {
        let resp = self
            .client
            .post(self.api_url("/api/v1/sql"))
            .json(&serde_json::json!({ "sql": q, "format": "json" }))
            .send()
            .await
            .map_err(|e| format!("POST /api/v1/sql: {e}"))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if status != reqwest::StatusCode::OK {
            return Err(format!("answered {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("answer is not JSON ({e}): {body}"))
    }

    /// Like [`TestServer::sql`], with each row turned into a map keyed by
    /// column name.
    pub async fn sql_rows(&self, q: &str) -> Vec<Row> {
        let answer = self.sql(q).await;
        rows_of(&answer, q)
    }

    /// Polls `q` until `done(rows)` holds, then returns those rows.
    pub async fn wait_rows<P>(&self, q: &str, done: P) -> Vec<Row>
    where
        P: Fn(&[Row]) -> bool,
    {
        let done = &done;
        poll_until_ok(DATA_DEADLINE, q, move || async move {
            let rows = self.sql_rows(q).await;
            if done(&rows) { Ok(rows) } else { Err(rows) }
        })
        .await
    }

    /// Polls `q` until it returns exactly `n` rows.
    pub async fn wait_row_count(&self, q: &str, n: usize) -> Vec<Row> {
        self.wait_rows(q, |rows| rows.len() == n).await
    }

    /// `POST /api/v1/flush`: every buffered row goes to Parquet now.
    pub async fn flush(&self) {
        let resp = self
            .client
            .post(self.api_url("/api/v1/flush"))
            .send()
            .await
            .expect("POST /api/v1/flush");
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, reqwest::StatusCode::OK, "flush answered: {body}");
    }

    /// Sends SIGTERM and asserts that the server exits successfully within
    /// [`STOP_DEADLINE`].
    pub async fn stop(&mut self) {
        let pid = self.child.as_ref().expect("server is not running").id();
        let kill = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(kill.success(), "kill -TERM {pid} failed: {kill}");

        let child = self.child.as_mut().expect("server is not running");
        let status = poll_until(STOP_DEADLINE, || {
            std::future::ready(child.try_wait().expect("wait for server"))
        })
        .await;
        self.child = None;
        self.addrs = None;
        assert!(
            status.success(),
            "server exited with {status} after SIGTERM; log:\n{}",
            self.log_tail()
        );
    }

    /// Starts the server again on the same data directory (stopping it
    /// gracefully first if it is still running).
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop().await;
        }
        self.spawn().await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_ready(ready: &Path, child: &mut Child, log: &Path) -> Result<Addrs, String> {
    if let Some(status) = child.try_wait().expect("poll server process") {
        panic!(
            "server exited with {status} before becoming ready; log:\n{}",
            tail_of(log)
        );
    }
    let text = match std::fs::read_to_string(ready) {
        Ok(text) => text,
        Err(e) => return Err(format!("no ready file yet: {e}")),
    };
    let json: Value = match serde_json::from_str(&text) {
        Ok(json) => json,
        Err(e) => return Err(format!("ready file not JSON yet ({e}): {text}")),
    };
    let addr = |key: &str| -> SocketAddr {
        let s = json
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("ready file lacks string {key:?}: {text}"));
        let addr: SocketAddr = s
            .parse()
            .unwrap_or_else(|e| panic!("ready file {key:?} = {s:?} is not an address: {e}"));
        assert_ne!(addr.port(), 0, "ready file {key:?} has port 0: {text}");
        addr
    };
    Ok(Addrs {
        otlp_grpc: addr("otlp_grpc"),
        otlp_http: addr("otlp_http"),
        http: addr("http"),
    })
}

fn tail_of(path: &Path) -> String {
    const TAIL: u64 = 16 * 1024;
    let Ok(mut file) = File::open(path) else {
        return format!("<no log at {}>", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(TAIL)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Turns a JSON SQL answer into rows keyed by column name, checking the
/// answer's own bookkeeping on the way.
pub fn rows_of(answer: &Value, q: &str) -> Vec<Row> {
    let columns: Vec<String> = answer["columns"]
        .as_array()
        .unwrap_or_else(|| panic!("SQL answer for {q:?} has no columns array: {answer}"))
        .iter()
        .map(|c| {
            c["name"]
                .as_str()
                .unwrap_or_else(|| panic!("column without a name in {answer}"))
                .to_owned()
        })
        .collect();
    let rows = answer["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("SQL answer for {q:?} has no rows array: {answer}"));
    assert_eq!(
        answer["row_count"].as_u64(),
        Some(rows.len() as u64),
        "row_count disagrees with rows for {q:?}: {answer}"
    );
    assert_eq!(
        answer["truncated"],
        Value::Bool(false),
        "unexpectedly truncated answer for {q:?}"
    );
    rows.iter()
        .map(|row| {
            let cells = row
                .as_array()
                .unwrap_or_else(|| panic!("row is not an array: {row}"));
            assert_eq!(cells.len(), columns.len(), "row width for {q:?}: {row}");
            columns
                .iter()
                .cloned()
                .zip(cells.iter().cloned())
                .collect::<Row>()
        })
        .collect()
}

/// Typed, panicking accessors for SQL rows.
pub trait RowExt {
    fn val(&self, key: &str) -> &Value;
    fn text(&self, key: &str) -> &str;
    fn int(&self, key: &str) -> i64;
    fn float(&self, key: &str) -> f64;
    fn is_null(&self, key: &str) -> bool;
}

impl RowExt for Row {
    fn val(&self, key: &str) -> &Value {
        self.get(key)
            .unwrap_or_else(|| panic!("no column {key:?} in row {self:?}"))
    }

    fn text(&self, key: &str) -> &str {
        self.val(key)
            .as_str()
            .unwrap_or_else(|| panic!("column {key:?} is not text in row {self:?}"))
    }

    fn int(&self, key: &str) -> i64 {
        self.val(key)
            .as_i64()
            .unwrap_or_else(|| panic!("column {key:?} is not an integer in row {self:?}"))
    }

    fn float(&self, key: &str) -> f64 {
        self.val(key)
            .as_f64()
            .unwrap_or_else(|| panic!("column {key:?} is not a number in row {self:?}"))
    }

    fn is_null(&self, key: &str) -> bool {
        self.val(key).is_null()
    }
}
