//! The embedded mode over HTTP: SQLite for the record and the journal in one
//! file, no MariaDB, no Redis. The same guarantees: an order answered 2xx
//! survives a kill mid-burst and is paid exactly once after the restart.
use crate::helpers::*;
use futures::StreamExt;
use komisi::engine::faults::Faults;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Embedded {
    base: String,
    client: reqwest::Client,
}

impl Embedded {
    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(STOREFRONT_KEY)
            .json(body)
            .send()
            .await
            .expect("POST")
    }
    async fn get(&self, path: &str) -> Value {
        let r = self.client.get(format!("{}{path}", self.base)).bearer_auth(ADMIN_KEY).send().await.expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }
    /// A full reconcile sweep now: its report.
    async fn reconcile(&self) -> Value {
        let r = self
            .client
            .post(format!("{}/admin/reconcile", self.base))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"wait": true}))
            .send()
            .await
            .expect("POST /admin/reconcile");
        assert!(r.status().is_success(), "reconcile: {}", r.status());
        r.json().await.expect("json")
    }
}

async fn start(file: &std::path::Path) -> (Instance, Embedded) {
    let mut config = test_config(format!("sqlite://{}", file.display()), "unused".into());
    config.redis_url = None;
    let (instance, addr, _) = start_instance(config, Arc::new(Faults::default())).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    (instance, Embedded { base: format!("http://{addr}"), client })
}

fn temp_db() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("komisi-test-{}.db", uuid::Uuid::now_v7().simple()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_mode_pays_the_worked_example() {
    let file = temp_db();
    let (instance, app) = start(&file).await;
    for (id, parent) in [("A", None), ("B", Some("A")), ("C", Some("B"))] {
        let r = app
            .post(
                "/v1/affiliates",
                &json!({"id": id, "name": id, "parent_id": parent, "referral_code": format!("code-{id}")}),
            )
            .await;
        assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    }
    assert_eq!(
        app.post("/v1/orders", &worked_example_order("o-1", "x", "code-C")).await.status(),
        reqwest::StatusCode::ACCEPTED
    );
    let until = Instant::now() + Duration::from_secs(20);
    while app.get("/v1/orders/o-1").await["commission_status"] != "processed" {
        assert!(Instant::now() < until, "processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (a, amount) in [("C", "95000"), ("B", "64500"), ("A", "21500")] {
        assert_eq!(dec(&app.get(&format!("/v1/affiliates/{a}")).await["balances"]["pending"]), d(amount), "{a}");
    }
    assert_eq!(app.get("/v1/buyers/x/rewards").await["points"], 26500);
    assert_eq!(app.reconcile().await["ok"], true);
    instance.kill().await;
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_burst_in_embedded_mode_loses_no_accepted_order_and_pays_each_once() {
    let file = temp_db();
    let (instance, app) = start(&file).await;
    for (id, parent) in [("A", None), ("B", Some("A")), ("C", Some("B"))] {
        app.post(
            "/v1/affiliates",
            &json!({"id": id, "name": id, "parent_id": parent, "referral_code": format!("code-{id}")}),
        )
        .await;
    }
    // No tiers or milestones: each order's entitlement depends on itself alone.
    let mut program = default_program();
    program["tiers"] = json!([]);
    program["milestones"] = json!([]);
    let r = app
        .client
        .put(format!("{}/admin/program", app.base))
        .bearer_auth(ADMIN_KEY)
        .json(&program)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // A burst of 400 orders from 16 clients; the instance is killed while it runs.
    let app = Arc::new(app);
    let burst = {
        let app = app.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..400)
                .map(|i| {
                    let app = app.clone();
                    async move {
                        let r = app
                            .client
                            .post(format!("{}/v1/orders", app.base))
                            .bearer_auth(STOREFRONT_KEY)
                            .json(&simple_order(&format!("k-{i}"), &format!("b-{i}"), Some("code-C"), "100000"))
                            .send()
                            .await;
                        matches!(r, Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED)
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<bool>>()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    instance.kill().await;
    let accepted = burst.await.unwrap().into_iter().filter(|ok| *ok).count();
    assert!(accepted > 0, "some orders were answered before the kill");
    // A new instance on the same file pays every accepted order, once.
    let (instance, app) = start(&file).await;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let events = app.get("/admin/events?status=pending&limit=1").await;
        let failed = app.get("/admin/events?status=failed&limit=1").await;
        if events["items"].as_array().unwrap().is_empty() && failed["items"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < until, "the backlog drains after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = dec(&app.get("/v1/affiliates/C").await["balances"]["pending"]);
    let stored = c / d("10000");
    // Every 2xx order is stored and paid; an order committed whose answer was
    // lost in the kill is paid too (it exists), never twice.
    assert!(stored >= rust_decimal::Decimal::from(accepted as u64), "{stored} paid, {accepted} accepted");
    assert_eq!(dec(&app.get("/v1/affiliates/B").await["balances"]["pending"]), stored * d("3000"));
    assert_eq!(dec(&app.get("/v1/affiliates/A").await["balances"]["pending"]), stored * d("1000"));
    let report = app.reconcile().await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checked"]["orders"].as_u64().unwrap(), stored.to_string().parse::<u64>().unwrap());
    instance.kill().await;
    let _ = std::fs::remove_file(&file);
}
