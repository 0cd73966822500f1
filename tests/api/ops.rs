//! Auth, health, readiness and metrics.
use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn keys_guard_the_api() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/v1/affiliates/A")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = app.client.get(app.url("/v1/affiliates/A")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app.client.get(app.url("/admin/program")).bearer_auth(STOREFRONT_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app.client.get(app.url("/admin/program")).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .client
        .put(app.url("/admin/program"))
        .bearer_auth(STOREFRONT_KEY)
        .json(&default_program())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(app.client.get(app.url(open)).send().await.unwrap().status(), StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn metrics_count_requests_and_events() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    app.accept(&json!({"id": "m-1", "buyer_id": "x", "referral_code": "code-A", "currency": "IDR",
        "items": [{"sku": "s", "category": "fashion", "quantity": 1, "unit_price": "100000"}]}))
        .await;
    app.processed("m-1").await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "komisi_http_requests_total{method=\"POST\",route=\"/v1/orders\",status=\"202\"}",
        "komisi_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/orders\",le=\"0.005\"}",
        "komisi_events_total{type=\"order.placed\",outcome=\"done\"}",
        "komisi_event_lag_seconds_bucket",
        "komisi_event_processing_duration_seconds_bucket",
        "komisi_commission_amount_total{kind=\"commission\"}",
        "komisi_events_pending",
        "komisi_actors_active",
    ] {
        assert!(text.contains(needle), "missing {needle} in /metrics:\n{text}");
    }
    // Raw ids never become labels.
    assert!(!text.contains("m-1"));
}

#[tokio::test]
async fn readiness_reports_a_missing_journal() {
    let app = spawn_app_without_journal().await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn commission_actors_are_spawned_per_partition_and_stop_when_idle() {
    let app = spawn_app_with(|c| c.actor_idle_ms = 300, komisi::engine::faults::Faults::default()).await;
    for n in 0..6 {
        app.create_affiliate(&format!("A{n}"), None).await;
    }
    for n in 0..6 {
        app.accept(&simple_order(&format!("o-{n}"), &format!("b-{n}"), Some(&format!("code-A{n}")), "100000")).await;
    }
    // An actor per partition while there is work (6 affiliates), …
    let mut peak = 0;
    for n in 0..6 {
        peak = peak.max(app.tree_stats().await.commission_actors);
        app.processed(&format!("o-{n}")).await;
    }
    assert!(peak >= 1, "actors were spawned");
    // … and none once every partition has been idle for the idle time.
    let idle = poll(std::time::Duration::from_secs(10), || async {
        let s = app.tree_stats().await;
        s.commission_actors == 0 && s.inflight == 0
    })
    .await;
    assert!(idle, "idle actors stopped: {:?}", app.tree_stats().await);
    // A new event for a retired partition spawns its actor again.
    app.accept(&simple_order("o-again", "b-again", Some("code-A0"), "100000")).await;
    app.processed("o-again").await;
    assert_eq!(app.balance("A0", "pending").await, d("20000"));
}

/// The binary as an operator meets it (embedded mode, its own file): the
/// start logs the migrations and the console's address and no WARN (nothing
/// was lost), each request gets an access line with its request id, a taken
/// port names the address and the setting, SIGTERM logs the drain, and
/// `serve --help` is grouped.
#[tokio::test]
async fn the_binary_logs_its_start_each_request_its_drain_and_a_taken_port_by_name() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!("komisi-ops-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // On the MySQL run: a new database and Redis prefix (where a fresh start
    // once logged 16 WARN lines about lost journal data that was not lost).
    let mysql = match test_backend() {
        TestBackend::MySql => {
            let name = format!("komisi_ops_{}", uuid::Uuid::now_v7().simple());
            let (db, url) = create_mysql_database(&name).await;
            Some((name, db, url))
        }
        TestBackend::Sqlite => None,
    };
    let prefix = format!("ops-{}", uuid::Uuid::now_v7().simple());
    let start = |file: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_komisi"));
        match &mysql {
            Some((_, _, url)) => cmd
                .env_clear()
                .env("DATABASE_URL", url)
                .env("REDIS_URL", redis_url())
                .env("KOMISI_REDIS_PREFIX", format!("{prefix}-{file}")),
            None => cmd.env_clear().env("DATABASE_URL", format!("sqlite://{}", dir.join(file).display())),
        };
        cmd.arg("serve")
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KOMISI_BIND", format!("127.0.0.1:{port}"))
            .env("KOMISI_LOG_FORMAT", "json")
            .env("KOMISI_RECOVERY_INTERVAL_MS", "200")
            .env("KOMISI_ADMIN_KEYS", "alice:ops-admin-secret")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start komisi")
    };
    // Killed if the test fails half-way (a panic must not leave it running).
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut first = KillOnDrop(start("a.db"));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for out in [
        Box::new(first.0.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(first.0.stdout.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut lines: Vec<String> = Vec::new();
    // Whether a line read so far, or one within 30 s, says `what`.
    let wait_for = |what: &dyn Fn(&str) -> bool, lines: &mut Vec<String>| -> bool {
        if lines.iter().any(|l| what(l)) {
            return true;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = what(&line);
                    lines.push(line);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    };
    let serving = format!("http://127.0.0.1:{port}/console");
    assert!(wait_for(&|l| l.contains("komisi serving") && l.contains(&serving), &mut lines), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("database migrations applied")), "{lines:#?}");
    if mysql.is_some() {
        // The recovery sweep meets the new journal partitions: said at info.
        assert!(wait_for(&|l| l.contains("journal partitions created"), &mut lines), "{lines:#?}");
    }
    // The copy-paste banner names the console too.
    assert!(wait_for(&|l| l.contains("The operator console:") && l.contains(&serving), &mut lines), "{lines:#?}");
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .header("X-Request-Id", "ops-test-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "ops-test-42");
    let access = |l: &str| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
            let f = &v["fields"];
            v["target"] == "komisi::access"
                && f["route"] == "/healthz"
                && f["method"] == "GET"
                && f["status"] == 200
                && f["request_id"] == "ops-test-42"
                && f["ms"].is_f64()
        })
    };
    assert!(wait_for(&access, &mut lines), "an access line: {lines:#?}");
    // An admin key's name (never the key) says who made an admin request.
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/admin/program"))
        .bearer_auth("ops-admin-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let by_alice = |l: &str| {
        serde_json::from_str::<serde_json::Value>(l)
            .is_ok_and(|v| v["fields"]["route"] == "/admin/program" && v["fields"]["actor"] == "alice")
    };
    assert!(wait_for(&by_alice, &mut lines), "the admin key's name in the access line: {lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("ops-admin-secret")), "the key itself is never logged");
    // What runs: the version and the commit, as a metric and in --version.
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    let build = metrics.lines().find(|l| l.starts_with("komisi_build_info{")).unwrap_or_default();
    assert!(build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{build}");
    assert!(regex::Regex::new(r#"git_sha="([0-9a-f]{12}|unknown)""#).unwrap().is_match(build), "{build}");
    // The same port again: refused, naming the address and the setting.
    let mut second = KillOnDrop(start("b.db"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "a second komisi on a taken port must stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port} (KOMISI_BIND / --bind)")), "{err}");
    // SIGTERM: the drain says what it does, and the process ends cleanly.
    let ok = Command::new("kill").args(["-TERM", &first.0.id().to_string()]).status().unwrap().success();
    assert!(ok);
    assert!(wait_for(&|l| l.contains("drained"), &mut lines), "{lines:#?}");
    assert!(first.0.wait().unwrap().success());
    // A fresh start lost nothing: not one WARN or ERROR line.
    let loud: Vec<&String> =
        lines.iter().filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\"")).collect();
    assert!(loud.is_empty(), "{loud:#?}");
    // `serve --help`: grouped, no internal labels.
    let help = Command::new(env!("CARGO_BIN_EXE_komisi")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for heading in
        ["Server:", "Database:", "Journal:", "Limits:", "Events, retries and reconcile:", "Webhooks:", "Tuning:"]
    {
        assert!(help.contains(heading), "{heading} in {help}");
    }
    assert!(!regex::Regex::new(r"\(G[0-9]+\)").unwrap().is_match(&help), "{help}");
    let _ = std::fs::remove_dir_all(&dir);
    if let Some((name, db, _)) = mysql {
        drop(db);
        drop_mysql_database(&name);
    }
}
