//! The webhook tests' receiver: `tests/webhooks/receiver.mjs`, a small node
//! HTTP server that checks every delivery with the official Standard Webhooks
//! library (npm `standardwebhooks`, pinned in tests/webhooks/package.json), so
//! komisi's signatures are judged by code that is not ours.
//!
//! [`Receiver::start`] runs it with the endpoint secrets (`whsec_<base64>`);
//! each delivery (any POST outside `/control/`) is logged with the indices of
//! the secrets it verified under ([`Delivery::verified_by`]) and answered as
//! [`Receiver::script`] said (default 200 `ok`). [`Receiver::verify`] runs the
//! library's `verify` on anything, so a test can show that the library itself
//! rejects a tampered body, an old timestamp or a wrong secret.
//!
//! Needs node 20+ and `npm ci` in tests/webhooks (scripts/test.sh does both).
//! The node process dies with the `Receiver` (kill on drop) and, should the
//! test process die first, when its stdin (a pipe from here) closes.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

const START_TIMEOUT: Duration = Duration::from_secs(20);
const NEEDS: &str =
    "the webhook tests need node 20+ on PATH and `npm ci` in tests/webhooks (scripts/test.sh does both)";

/// One delivery as the receiver got it.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The request target, query included.
    pub path: String,
    /// The `webhook-id`, `webhook-timestamp` and `webhook-signature` headers ("" when absent).
    pub webhook_id: String,
    pub webhook_timestamp: String,
    pub webhook_signature: String,
    /// The body, as UTF-8 (the signature was checked over the exact bytes).
    pub body: String,
    /// Indices (into the secrets given to [`Receiver::start`]) of the secrets
    /// under which the library's `verify` accepted it.
    pub verified_by: Vec<usize>,
    /// The library's message for the first secret that did not verify it.
    pub verify_error: Option<String>,
    /// The status the receiver answered with.
    pub status: u16,
    /// Arrival, in milliseconds since the Unix epoch (the receiver's clock).
    pub at: u64,
}

impl Delivery {
    /// The body parsed as JSON; panics when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("delivery to {} has a body that is not JSON ({e}): {}", self.path, self.body))
    }

    /// True when the secret at `index` verified it.
    pub fn verified_with(&self, index: usize) -> bool {
        self.verified_by.contains(&index)
    }

    fn from_json(v: &Value) -> Delivery {
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        Delivery {
            path: text("path"),
            webhook_id: text("webhook_id"),
            webhook_timestamp: text("webhook_timestamp"),
            webhook_signature: text("webhook_signature"),
            body: text("body"),
            verified_by: v["verified_by"]
                .as_array()
                .unwrap_or_else(|| panic!("receiver log entry without verified_by: {v}"))
                .iter()
                .map(|i| i.as_u64().expect("verified_by index") as usize)
                .collect(),
            verify_error: v["verify_error"].as_str().map(str::to_owned),
            status: v["status"].as_u64().unwrap_or_else(|| panic!("receiver log entry without status: {v}")) as u16,
            at: v["at"].as_u64().unwrap_or_default(),
        }
    }
}

/// One scripted answer to a delivery.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub status: u16,
    /// The `Retry-After` header's value, when given.
    pub retry_after: Option<String>,
    /// Wait this long before answering (for timeouts).
    pub delay_ms: Option<u64>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, retry_after: None, delay_ms: None }
    }

    pub fn retry_after(mut self, value: &str) -> Reply {
        self.retry_after = Some(value.to_owned());
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Reply {
        self.delay_ms = Some(ms);
        self
    }
}

/// A running receiver; the node process is killed when this is dropped.
pub struct Receiver {
    child: Child,
    port: u16,
    client: reqwest::Client,
    /// What the receiver wrote to stderr (and to stdout after its first line).
    output: Arc<Mutex<String>>,
}

fn receiver_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhooks")
}

/// Appends everything `from` writes, line by line, to `to`.
fn collect(from: impl AsyncRead + Unpin + Send + 'static, to: Arc<Mutex<String>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut out = to.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    })
}

impl Receiver {
    /// Starts the receiver with these endpoint secrets (`whsec_<base64>`) and
    /// waits (at most 20 s) until it listens.
    pub async fn start(secrets: &[&str]) -> Receiver {
        for s in secrets {
            assert!(!s.contains(','), "a receiver secret cannot contain a comma: {s}");
        }
        let dir = receiver_dir();
        let script = dir.join("receiver.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .current_dir(&dir)
            .env("RECEIVER_SECRETS", secrets.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node {}`: {e}: {NEEDS}", script.display()));
        let output = Arc::new(Mutex::new(String::new()));
        let stderr = collect(child.stderr.take().expect("piped stderr"), output.clone());
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();

        let first = tokio::time::timeout(START_TIMEOUT, stdout.next_line()).await;
        let port = match &first {
            Ok(Ok(Some(line))) => line.strip_prefix("listening ").and_then(|p| p.trim().parse::<u16>().ok()),
            _ => None,
        };
        let Some(port) = port else {
            let _ = child.start_kill();
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), stderr).await;
            let what = match first {
                Err(_) => format!("did not say `listening <port>` within {START_TIMEOUT:?}"),
                Ok(Err(e)) => format!("stdout could not be read: {e}"),
                Ok(Ok(None)) => match status {
                    Ok(Ok(status)) => format!("exited before listening ({status})"),
                    _ => "closed its stdout before listening".to_owned(),
                },
                Ok(Ok(Some(line))) => format!("said {line:?} instead of `listening <port>`"),
            };
            panic!(
                "the webhook receiver (node {}) {what}; {NEEDS}.\nits stderr:\n{}",
                script.display(),
                output.lock().unwrap()
            );
        };
        // Nothing more is expected on stdout; keep draining it all the same.
        collect(stdout.into_inner(), output.clone());

        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("receiver control client");
        Receiver { child, port, client, output }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`: an endpoint URL for komisi.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What the receiver wrote to stderr so far (errors only, normally empty).
    pub fn stderr(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.client.request(method, self.url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("receiver {path}: {e}\nits stderr:\n{}", self.stderr()));
        let status = res.status();
        let text = res.text().await.unwrap_or_else(|e| panic!("receiver {path}: reading the answer: {e}"));
        assert!(status.is_success(), "receiver {path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("receiver {path} answered non-JSON ({e}): {text}"))
    }

    /// The next deliveries to `path` (the request target exactly, query
    /// included) get these answers in order; after them, 200 `ok`. Appends
    /// to what is still scripted for `path`.
    pub async fn script(&self, path: &str, replies: &[Reply]) {
        let responses: Vec<Value> = replies
            .iter()
            .map(|r| json!({"status": r.status, "retry_after": r.retry_after, "delay_ms": r.delay_ms}))
            .collect();
        self.control(reqwest::Method::POST, "/control/script", Some(json!({"path": path, "responses": responses})))
            .await;
    }

    /// Every delivery so far, in arrival order.
    pub async fn log(&self) -> Vec<Delivery> {
        let log = self.control(reqwest::Method::GET, "/control/log", None).await;
        log.as_array().expect("receiver log is an array").iter().map(Delivery::from_json).collect()
    }

    /// Empties the log (scripts are kept).
    pub async fn clear(&self) {
        self.control(reqwest::Method::POST, "/control/clear", Some(json!({}))).await;
    }

    /// Polls the log every 50 ms until `what` holds, and returns it; panics
    /// with the log when `timeout` passes first.
    pub async fn wait_for(&self, what: impl Fn(&[Delivery]) -> bool, timeout: Duration) -> Vec<Delivery> {
        let until = Instant::now() + timeout;
        loop {
            let log = self.log().await;
            if what(&log) {
                return log;
            }
            if Instant::now() >= until {
                panic!(
                    "the webhook receiver did not see what was waited for within {timeout:?}; its log ({} deliveries):\n{:#?}",
                    log.len(),
                    log
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The library's `verify(body, headers)` under `secret`: Err holds its
    /// message ("No matching signature found", "Message timestamp too old",
    /// "Missing required headers", ...).
    pub async fn verify(&self, body: &str, headers: &[(&str, &str)], secret: &str) -> Result<(), String> {
        let headers: serde_json::Map<String, Value> =
            headers.iter().map(|(k, v)| ((*k).to_owned(), Value::from(*v))).collect();
        let r = self
            .control(
                reqwest::Method::POST,
                "/control/verify",
                Some(json!({"body": body, "headers": headers, "secret": secret})),
            )
            .await;
        match r["ok"].as_bool() {
            Some(true) => Ok(()),
            Some(false) => Err(r["error"].as_str().unwrap_or("(no message)").to_owned()),
            None => panic!("receiver /control/verify answered {r}"),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // kill_on_drop would do it too; this also covers a Receiver moved out of its runtime.
        let _ = self.child.start_kill();
    }
}
