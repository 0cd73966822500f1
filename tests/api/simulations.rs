//! `/admin/simulations` (docs/API.md "Simulations"): a candidate program
//! backtested over past orders in the background.
use crate::helpers::*;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

async fn run(app: &TestApp, body: &Value) -> Value {
    let r = app.admin_post("/admin/simulations", body).await;
    let status = r.status();
    let queued: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let id = queued["id"].as_u64().unwrap();
    let done = poll(Duration::from_secs(60), || async move {
        let s = app.admin_get(&format!("/admin/simulations/{id}")).await;
        s["status"] == "done" || s["status"] == "failed"
    })
    .await;
    assert!(done, "the simulation ends");
    let sim = app.admin_get(&format!("/admin/simulations/{id}")).await;
    assert_eq!(sim["status"], "done", "{sim}");
    sim
}

fn total<'a>(sim: &'a Value, kind: &str, level: u64) -> &'a Value {
    sim["result"]["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == kind && t["level"] == level)
        .unwrap_or_else(|| panic!("no {kind}@{level}: {sim}"))
}

#[tokio::test]
async fn the_applied_program_backtests_to_a_zero_delta_and_a_doubled_level_1_to_exactly_twice() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    // 300 orders of C (100 000 each: C 10 000, B 3 000, A 1 000; C's tier from
    // its 101st order, its milestone on its 3rd), one refunded.
    let ids: Vec<String> = (0..300).map(|i| format!("o-{i:03}")).collect();
    let accepted: Vec<StatusCode> = futures::stream::iter(ids.iter())
        .map(|id| {
            let app = &app;
            async move {
                let mut o = simple_order(id, &format!("b-{id}"), Some("code-C"), "100000");
                o["placed_at"] = json!(format!(
                    "2026-11-10T{:02}:{:02}:00Z",
                    1 + id[2..].parse::<u32>().unwrap() / 60,
                    id[2..].parse::<u32>().unwrap() % 60
                ));
                app.post("/v1/orders", &o).await.status()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(accepted.iter().all(|s| *s == StatusCode::ACCEPTED));
    for id in &ids {
        app.processed(id).await;
    }
    let r = app
        .post("/v1/orders/o-007/refunds", &json!({"refund_id": "r", "items": [{"sku": "item", "quantity": 1}]}))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.processed("o-007").await;
    // An order outside the window is not counted.
    let mut late = simple_order("late", "b-late", Some("code-C"), "100000");
    late["placed_at"] = json!("2026-11-20T00:00:00Z");
    app.accept(&late).await;
    app.processed("late").await;

    let mut program = app.admin_get("/admin/program").await;
    program.as_object_mut().unwrap().remove("version");
    let window = json!({"since": "2026-11-10T00:00:00Z", "until": "2026-11-11T00:00:00Z"});
    let with = |program: &Value, compare_to: Value| {
        let mut b = window.clone();
        b["program"] = program.clone();
        b["compare_to"] = compare_to;
        b
    };
    // The program in force, against the ledger: not one unit of difference.
    let same = run(&app, &with(&program, json!("applied"))).await;
    let r = &same["result"];
    assert_eq!((&r["orders"], &r["skipped"]), (&json!(300), &json!(0)), "{same}");
    for t in r["totals"].as_array().unwrap() {
        assert_eq!(t["delta"], "0", "{t}");
    }
    assert_eq!((&r["top_affiliates"], &r["top_orders"]), (&json!([]), &json!([])));
    // 299 orders pay C 10 000 (o-007 was refunded).
    assert_eq!(total(&same, "commission", 1)["baseline"], "2990000");
    assert_eq!((&same["progress"]["done"], &same["progress"]["total"]), (&json!(300), &json!(300)));
    assert_eq!(r["points_baseline"], r["points_candidate"]);

    // levels[0] doubled: C's commissions exactly twice, nothing else moves.
    let mut doubled = program.clone();
    doubled["levels"][0] = json!("0.20");
    let twice = run(&app, &with(&doubled, json!("applied"))).await;
    let c1 = total(&twice, "commission", 1);
    assert_eq!(
        (&c1["baseline"], &c1["candidate"], &c1["delta"]),
        (&json!("2990000"), &json!("5980000"), &json!("2990000"))
    );
    for (kind, level) in [("commission", 2), ("commission", 3), ("tier_bonus", 1), ("milestone_bonus", 1)] {
        assert_eq!(total(&twice, kind, level)["delta"], "0", "{kind}@{level}");
    }
    let top = &twice["result"]["top_affiliates"];
    assert_eq!((top.as_array().unwrap().len(), &top[0]["id"], &top[0]["delta"]), (1, &json!("C"), &json!("2990000")));
    assert_eq!(twice["result"]["top_orders"].as_array().unwrap().len(), 100);
    // Every affiliate as CSV.
    let id = twice["id"].as_u64().unwrap();
    let r = app
        .client
        .get(app.url(&format!("/admin/simulations/{id}/affiliates.csv")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("affiliate_id,baseline,candidate,delta\n"), "{csv}");
    let c_line = csv.lines().find(|l| l.starts_with("C,")).unwrap();
    let cols: Vec<&str> = c_line.split(',').collect();
    assert_eq!(cols[3], "2990000", "{c_line}");
    // A candidate with a monthly cap of 1 000 000 a direct affiliate: C's
    // month would pass it by what its level-1 lines add up to.
    let mut capped = program.clone();
    capped["affiliate_caps"] = json!([{"period": "month", "max_commission": "1000000"}]);
    let caps = run(&app, &with(&capped, json!("applied"))).await;
    let r = &caps["result"];
    assert_eq!(r["windows_that_would_bind"], 1, "{caps}");
    let bind = &r["caps_that_would_bind"][0];
    let level1: rust_decimal::Decimal =
        ["commission", "tier_bonus", "milestone_bonus"].iter().map(|k| dec(&total(&caps, k, 1)["candidate"])).sum();
    assert_eq!(
        (&bind["scope"], &bind["subject"], &bind["period"]),
        (&json!("affiliate"), &json!("C"), &json!("month"))
    );
    assert_eq!((dec(&bind["entitled"]), &bind["max"]), (level1, &json!("1000000")), "{bind}");
    assert_eq!(bind["window_start"], "2026-10-31T17:00:00Z", "November in Jakarta");
    // Against version 1 (the same rules as the program in force): zero again.
    let v1 = run(&app, &with(&program, json!(1))).await;
    assert!(v1["result"]["totals"].as_array().unwrap().iter().all(|t| t["delta"] == "0"), "{v1}");
    // A finished simulation stays finished when cancelled; unknown: 404.
    let r =
        app.client.delete(app.url(&format!("/admin/simulations/{id}"))).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "done");
    let r = app.client.get(app.url("/admin/simulations/999999")).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Bad input: 422 naming the field, nothing queued.
    let mut bad = with(&program, json!("applied"));
    bad["until"] = json!("2027-12-01T00:00:00Z");
    bad["program"]["levels"][0] = json!("2");
    bad["compare_to"] = json!(99);
    let r = app.admin_post("/admin/simulations", &bad).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["program.levels[0]", "until", "compare_to"], "{body}");
    let mut bad = with(&program, json!("latest"));
    bad["since"] = json!("yesterday");
    let r = app.admin_post("/admin/simulations", &bad).await;
    let body: Value = r.json().await.unwrap();
    let fields: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["since", "compare_to"], "{body}");
}

#[tokio::test]
async fn a_running_simulation_reports_its_progress_page_by_page_and_a_sixth_open_one_is_refused() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    for i in 0..30 {
        let mut o = simple_order(&format!("p-{i:02}"), &format!("b-{i}"), Some("code-C"), "100000");
        o["placed_at"] = json!(format!("2026-11-10T01:{i:02}:00Z"));
        app.accept(&o).await;
    }
    for i in 0..30 {
        app.processed(&format!("p-{i:02}")).await;
    }
    // Pages of 10 orders; the runner waits before each page until allowed.
    app.faults.simulation_page_size(10);
    app.faults.hold_simulations(Some(0));
    let mut program = app.admin_get("/admin/program").await;
    program.as_object_mut().unwrap().remove("version");
    let body = json!({"program": program, "since": "2026-11-10T00:00:00Z", "until": "2026-11-11T00:00:00Z",
                      "compare_to": "applied"});
    let r = app.admin_post("/admin/simulations", &body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let at = |done: u64| {
        let app = &app;
        async move {
            poll(Duration::from_secs(30), || async move {
                let s = app.admin_get(&format!("/admin/simulations/{id}")).await;
                s["status"] == "running" && s["progress"]["done"] == done && s["progress"]["total"] == 30
            })
            .await
        }
    };
    assert!(at(0).await, "running, nothing done yet");
    // Four more queue behind it (five open); the sixth is refused with a Retry-After.
    let mut queued = Vec::new();
    for _ in 0..4 {
        let r = app.admin_post("/admin/simulations", &body).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        queued.push(r.json::<Value>().await.unwrap()["id"].as_u64().unwrap());
    }
    let r = app.admin_post("/admin/simulations", &body).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    for (allowed, done) in [(1, 10), (1, 20)] {
        app.faults.allow_simulation_pages(allowed);
        assert!(at(done).await, "progress reaches {done}/30");
        let s = app.admin_get(&format!("/admin/simulations/{id}")).await;
        assert!(s["progress"]["eta_secs"].as_f64().is_some(), "an ETA while running: {s}");
        assert!(s["result"].is_null(), "no result before the end: {s}");
    }
    // A queued one cancelled is not run; with one place free, a new one is taken.
    let r = app
        .client
        .delete(app.url(&format!("/admin/simulations/{}", queued[3])))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "cancelled");
    let r = app.admin_post("/admin/simulations", &body).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.faults.hold_simulations(None);
    for sid in [id, queued[0], queued[1], queued[2]] {
        let app = &app;
        let done = poll(Duration::from_secs(60), || async move {
            app.admin_get(&format!("/admin/simulations/{sid}")).await["status"] == "done"
        })
        .await;
        assert!(done, "simulation {sid} ends");
    }
    let s = app.admin_get(&format!("/admin/simulations/{id}")).await;
    assert_eq!((&s["progress"]["done"], &s["result"]["orders"]), (&json!(30), &json!(30)), "{s}");
    assert_eq!(app.admin_get(&format!("/admin/simulations/{}", queued[3])).await["status"], "cancelled");
}
