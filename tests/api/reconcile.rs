//! Reconcile as a background job: an incremental run checks what changed
//! since the runs before it and nothing else, a full sweep everything; a
//! stopped sweep is resumed where it stopped; one run at a time across
//! instances; the schedule starts a full sweep first and incremental runs
//! after; `GET` answers the last result without checking anything.
use crate::helpers::*;
use futures::StreamExt;
use komisi::domain::reconcile::RunKind;
use komisi::engine::reconcile::Started;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Kinds of the violations in a report, with whom they name.
fn violations(report: &Value) -> Vec<(String, String)> {
    report["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| {
            let who = ["order_id", "affiliate_id", "buyer_id"].iter().find_map(|k| v[*k].as_str()).unwrap_or("");
            (v["kind"].as_str().expect("kind").to_owned(), who.to_owned())
        })
        .collect()
}

async fn place_processed(app: &TestApp, id: &str, code: &str) {
    app.accept(&simple_order(id, &format!("buyer-{id}"), Some(code), "100000")).await;
    app.processed(id).await;
}

/// Moves money between an order's entry and its affiliate's balance so
/// that the balances still add up: only recomputing the order finds it.
async fn corrupt_entry_quietly(app: &TestApp, order: &str, affiliate: &str) {
    // (Its first: an order that reached a milestone has a bonus entry too.)
    let id = app
        .db
        .one("SELECT MIN(id) FROM ledger_entries WHERE order_id = ? AND affiliate_id = ?", &[order, affiliate])
        .await;
    app.db.add_money("ledger_entries", "amount", &id, d("1")).await;
    app.db.add_money("affiliates", "pending", affiliate, d("1")).await;
}

#[tokio::test]
async fn an_incremental_run_checks_what_changed_and_a_full_sweep_everything() {
    let app = spawn_app().await;
    let none = app.admin_get("/admin/reconcile").await;
    assert_eq!(none, json!({"last": null, "running": null}), "nothing ran yet");
    abc_tree(&app).await;
    app.create_affiliate("D", None).await;
    place_processed(&app, "o-1", "code-C").await;
    let first = app.reconcile().await;
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["checked"]["orders"], 1);

    // o-1 corrupted where no balance shows it; o-2 touches only D.
    corrupt_entry_quietly(&app, "o-1", "C").await;
    place_processed(&app, "o-2", "code-D").await;
    let incremental = app.reconcile_kind("incremental").await;
    assert_eq!(incremental["kind"], "incremental");
    assert_eq!(incremental["ok"], true, "o-1 changed in no run's window: {incremental}");
    assert_eq!(incremental["checked"]["orders"], 1, "only o-2: {incremental}");
    assert_eq!(incremental["checked"]["affiliates"], 1, "only D: {incremental}");
    assert_eq!(
        incremental["coverage"]["ledger_entries"]["from"], first["coverage"]["ledger_entries"]["to"],
        "it starts where the full sweep ended"
    );

    let full = app.reconcile().await;
    assert_eq!(full["checked"]["orders"], 2);
    assert_eq!(violations(&full), vec![("ledger_differs_from_entitlement".to_string(), "o-1".to_string())], "{full}");

    // A change in the window is found by the incremental run.
    app.db.add_money("affiliates", "pending", "D", d("5")).await;
    place_processed(&app, "o-3", "code-D").await;
    let caught = app.reconcile_kind("incremental").await;
    assert_eq!(violations(&caught), vec![("balance_mismatch".to_string(), "D".to_string())], "{caught}");
    assert_eq!(caught["violations_total"], 1);

    // GET answers the last result as it was stored.
    let status = app.admin_get("/admin/reconcile").await;
    assert_eq!(status["last"]["run_id"], caught["run_id"]);
    assert_eq!(status["last"]["violations"], caught["violations"]);
    assert_eq!(status["running"], Value::Null);
}

/// An incremental run checks the touched buyers' points on a second
/// snapshot while it checks the touched affiliates' balances on its first:
/// a wrong value is found on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_run_checks_points_and_balances_side_by_side() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    place_processed(&app, "o-1", "code-C").await;
    let first = app.reconcile().await;
    assert_eq!(first["ok"], true, "{first}");
    place_processed(&app, "o-2", "code-B").await;
    app.db.add_money("affiliates", "pending", "B", d("5")).await;
    app.db.exec("UPDATE buyers SET points = '999999' WHERE id = 'buyer-o-2'", &[]).await;
    let run = app.reconcile_kind("incremental").await;
    let found = violations(&run);
    for expected in [("balance_mismatch", "B"), ("points_mismatch", "buyer-o-2")] {
        assert!(found.contains(&(expected.0.to_string(), expected.1.to_string())), "{expected:?} in {run}");
    }
}

/// An incremental run over more orders than a page (500) reads each next
/// page while it checks one: every order and every wallet of the window is
/// checked once, and what is wrong is found on the first page and the last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_run_over_several_pages_checks_every_order_once() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    let first = app.reconcile().await;
    assert_eq!(first["ok"], true, "{first}");
    let ids: Vec<String> = (0..1_101).map(|i| format!("p-{i:04}")).collect();
    let app = &app;
    futures::stream::iter(&ids)
        .for_each_concurrent(16, |id| async move {
            app.accept(&simple_order(id, &format!("buyer-{id}"), Some("code-C"), "100000")).await;
        })
        .await;
    let done = poll(Duration::from_secs(120), || async {
        app.db.int("SELECT COUNT(*) FROM orders WHERE commission_status = 'processed'", &[]).await == 1_101
    })
    .await;
    assert!(done, "every order processed");
    // The orders are checked in id order: p-0000 on the first page, p-1100 on the third.
    corrupt_entry_quietly(app, "p-0000", "C").await;
    corrupt_entry_quietly(app, "p-1100", "B").await;
    let run = app.reconcile_kind("incremental").await;
    assert_eq!((&run["checked"]["orders"], &run["checked"]["wallets"]), (&json!(1_101), &json!(1_101)), "{run}");
    let mut found = violations(&run);
    found.sort();
    let differs = |o: &str| ("ledger_differs_from_entitlement".to_string(), o.to_string());
    assert_eq!(found, vec![differs("p-0000"), differs("p-1100")], "{run}");
}

/// The very first run may be an incremental one (an operator's, before the
/// schedule's first sweep): its window starts at the beginning.
#[tokio::test]
async fn a_first_run_that_is_incremental_checks_everything_so_far() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    place_processed(&app, "o-1", "code-C").await;
    place_processed(&app, "o-2", "code-B").await;
    let first = app.reconcile_kind("incremental").await;
    assert_eq!(first["kind"], "incremental");
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["checked"]["orders"], 2, "{first}");
    assert_eq!(first["checked"]["affiliates"], 3, "C, B and A: {first}");
    assert_eq!(first["coverage"]["ledger_entries"]["from"], 0, "{first}");
    // And it finds what is wrong in that window.
    app.db.add_money("affiliates", "pending", "C", d("5")).await;
    place_processed(&app, "o-3", "code-C").await;
    let caught = app.reconcile_kind("incremental").await;
    assert_eq!(violations(&caught), vec![("balance_mismatch".to_string(), "C".to_string())], "{caught}");
}

/// An incremental run whose window spans more entries than
/// `reconcile_incremental_max_entries` runs as a full sweep (bounded memory):
/// the first one on a database with history, and one after a long pause. It
/// is a real sweep: it finds what is wrong outside the window.
#[tokio::test]
async fn an_incremental_run_over_too_many_entries_is_a_full_sweep() {
    let app = spawn_app_with(|c| c.reconcile_incremental_max_entries = 3, Default::default()).await;
    abc_tree(&app).await;
    app.create_affiliate("D", None).await;
    let entries = |order: &'static str| {
        let app = &app;
        async move {
            app.db.int("SELECT COUNT(*) FROM ledger_entries WHERE order_id = ?", &[order]).await
                + app.db.int("SELECT COUNT(*) FROM reward_entries WHERE order_id = ?", &[order]).await
        }
    };
    place_processed(&app, "o-1", "code-C").await;
    assert!(entries("o-1").await > 3, "C, B and A's commissions and the buyer's points");
    let first = app.reconcile_kind("incremental").await;
    assert_eq!((&first["kind"], &first["ok"], &first["checked"]["orders"]), (&json!("full"), &json!(true), &json!(1)));

    place_processed(&app, "o-2", "code-D").await;
    assert!(entries("o-2").await <= 3, "D's commission and the buyer's points");
    let small = app.reconcile_kind("incremental").await;
    assert_eq!((&small["kind"], &small["checked"]["orders"]), (&json!("incremental"), &json!(1)), "{small}");

    // o-2's and o-3's entries together are past the limit; o-1, outside
    // that window, is wrong: only a sweep sees it.
    corrupt_entry_quietly(&app, "o-1", "C").await;
    place_processed(&app, "o-3", "code-C").await;
    let wide = app.reconcile_kind("incremental").await;
    assert_eq!((&wide["kind"], &wide["checked"]["orders"]), (&json!("full"), &json!(3)), "{wide}");
    assert_eq!(violations(&wide), vec![("ledger_differs_from_entitlement".to_string(), "o-1".to_string())], "{wide}");
    let last = app.admin_get("/admin/reconcile").await;
    assert_eq!((&last["last"]["run_id"], &last["last"]["kind"]), (&wide["run_id"], &json!("full")));
}

/// Entries are summed from just above a check's mark, both where the
/// touched affiliates' recent entries are read in one scan (C and B, checked
/// near the end; the scan starts at B's mark, below C's) and where an
/// affiliate checked long ago is read on its own (D, 80 entries back): a
/// check whose mark is the affiliate's own last entry must not count that
/// entry twice.
#[tokio::test]
async fn an_incremental_run_sums_entries_from_just_above_each_check_in_the_scan_and_one_by_one() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.create_affiliate("D", None).await;
    place_processed(&app, "o-d1", "code-D").await;
    for n in 0..26 {
        place_processed(&app, &format!("o-c{n}"), "code-C").await;
    }
    for _ in 0..2 {
        let sweep = app.reconcile().await;
        assert_eq!(sweep["ok"], true, "{sweep}");
    }
    // Each check moved back to the affiliate's own last entry: the totals
    // stay right (no entry of theirs lies between), the marks are on an entry.
    for a in ["C", "D"] {
        app.db
            .exec(
                "UPDATE affiliate_checks SET ledger_mark = (SELECT MAX(id) FROM ledger_entries WHERE affiliate_id = ?) \
                 WHERE affiliate_id = ?",
                &[a, a],
            )
            .await;
    }
    // B's check one order further back (its o-c25 entries above it, out
    // of its total): the scan starts there, below C's mark.
    let b_last: rust_decimal::Decimal = app
        .db
        .column("SELECT amount FROM ledger_entries WHERE affiliate_id = 'B' AND order_id = 'o-c25'", &[])
        .await
        .iter()
        .map(|a| d(a))
        .sum();
    let b_mark =
        app.db.one("SELECT MAX(id) FROM ledger_entries WHERE affiliate_id = 'B' AND order_id = 'o-c24'", &[]).await;
    let b_total = d(&app.db.one("SELECT total FROM affiliate_checks WHERE affiliate_id = 'B'", &[]).await);
    let total = (b_total - b_last).to_string();
    app.db
        .exec("UPDATE affiliate_checks SET ledger_mark = ?, total = ? WHERE affiliate_id = 'B'", &[&b_mark, &total])
        .await;
    let behind = app
        .db
        .int(
            "SELECT (SELECT MAX(id) FROM ledger_entries) - (SELECT ledger_mark FROM affiliate_checks WHERE affiliate_id = 'D')",
            &[],
        )
        .await;
    assert!(behind > 75, "D is checked long ago: {behind} entries back");
    place_processed(&app, "o-d2", "code-D").await;
    place_processed(&app, "o-c26", "code-C").await;
    let run = app.reconcile_kind("incremental").await;
    assert_eq!(run["checked"]["affiliates"], 4, "{run}");
    assert_eq!(run["ok"], true, "{run}");
    // And the sums are the checks': a wrong one is found on either path.
    for a in ["C", "D"] {
        let total = app.db.one("SELECT total FROM affiliate_checks WHERE affiliate_id = ?", &[a]).await;
        let wrong = (d(&total) + d("1")).to_string();
        app.db.exec("UPDATE affiliate_checks SET total = ? WHERE affiliate_id = ?", &[&wrong, a]).await;
    }
    place_processed(&app, "o-d3", "code-D").await;
    place_processed(&app, "o-c27", "code-C").await;
    let caught = app.reconcile_kind("incremental").await;
    let mut named = violations(&caught);
    named.sort();
    assert_eq!(
        named,
        vec![("balance_mismatch".to_string(), "C".to_string()), ("balance_mismatch".to_string(), "D".to_string())],
        "{caught}"
    );
}

/// An incremental run checks a touched affiliate's total from its last
/// check (`affiliate_checks`) plus its new entries, not from its whole
/// history; a full sweep trusts no check and writes them all anew.
#[tokio::test]
async fn an_incremental_run_totals_an_affiliate_from_its_last_check() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    place_processed(&app, "o-1", "code-A").await;
    place_processed(&app, "o-2", "code-A").await;
    let first = app.reconcile().await;
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(app.db.int("SELECT COUNT(*) FROM affiliate_checks", &[]).await, 0, "no run before it: no mark");
    let second = app.reconcile().await;
    assert_eq!(second["ok"], true, "{second}");
    let check = app.db.rows("SELECT ledger_mark, total FROM affiliate_checks WHERE affiliate_id = 'A'", &[]).await;
    let amounts = app.db.column("SELECT amount FROM ledger_entries WHERE affiliate_id = 'A'", &[]).await;
    let entries: rust_decimal::Decimal = amounts.iter().map(|a| d(a)).sum();
    let mark = first["coverage"]["ledger_entries"]["to"].to_string();
    assert_eq!(check[0][0].as_deref(), Some(mark.as_str()), "the mark of the run before it");
    assert_eq!(d(check[0][1].as_deref().unwrap()), entries, "A's total up to the first run's mark");

    // A wrong check: the incremental run that touches A trusts it, and says so.
    let wrong = (d(check[0][1].as_deref().unwrap()) + d("1")).to_string();
    app.db.exec("UPDATE affiliate_checks SET total = ? WHERE affiliate_id = 'A'", &[&wrong]).await;
    place_processed(&app, "o-3", "code-A").await;
    let caught = app.reconcile_kind("incremental").await;
    assert_eq!(violations(&caught), vec![("balance_mismatch".to_string(), "A".to_string())], "{caught}");
    // The full sweep sums A's history, finds it right, and writes its check anew.
    let full = app.reconcile().await;
    assert_eq!(full["ok"], true, "{full}");
    place_processed(&app, "o-4", "code-A").await;
    let incremental = app.reconcile_kind("incremental").await;
    assert_eq!((incremental["ok"].as_bool(), incremental["checked"]["affiliates"].as_u64()), (Some(true), Some(1)));

    // A paid balance off by 5, and a pending one off by 2: each is caught.
    app.db.add_money("affiliates", "paid", "A", d("5")).await;
    place_processed(&app, "o-5", "code-A").await;
    let caught = app.reconcile_kind("incremental").await;
    assert_eq!(violations(&caught), vec![("balance_mismatch".to_string(), "A".to_string())], "{caught}");
    app.db.add_money("affiliates", "paid", "A", d("-5")).await;
    app.db.add_money("affiliates", "pending", "A", d("2")).await;
    place_processed(&app, "o-6", "code-A").await;
    let caught = app.reconcile_kind("incremental").await;
    assert_eq!(violations(&caught), vec![("balance_mismatch".to_string(), "A".to_string())], "{caught}");
    app.db.add_money("affiliates", "pending", "A", d("-2")).await;
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_stopped_full_sweep_is_resumed_where_it_stopped() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    for i in 0..30 {
        app.accept(&simple_order(&format!("o-{i:02}"), "x", Some("code-A"), "100000")).await;
    }
    for i in 0..30 {
        app.processed(&format!("o-{i:02}")).await;
    }
    // An instance claims a sweep, checks up to o-14, and dies.
    let engine = engine_on(open_store(&app.config, 2).await.into(), Duration::from_secs(60));
    let Started::Started(run) = engine.start_reconcile(RunKind::Full, None).await.expect("claim") else {
        panic!("nothing else runs")
    };
    let id = run.id.to_string();
    app.db.exec("UPDATE reconcile_runs SET after_order = 'o-14', done_count = 15 WHERE id = ?", &[&id]).await;
    app.db.set_time("reconcile_runs", "heartbeat_at", &id, chrono::Utc::now() - chrono::TimeDelta::minutes(5)).await;

    let resumed = app.reconcile().await;
    assert_ne!(resumed["run_id"].as_u64(), Some(run.id));
    assert_eq!(resumed["checked"]["orders"], 15, "o-15..o-29 only: {resumed}");
    assert_eq!(resumed["ok"], true);
    let stopped = app.db.rows("SELECT status, error FROM reconcile_runs WHERE id = ?", &[&id]).await;
    assert_eq!(stopped[0][0].as_deref(), Some("failed"));
    assert!(stopped[0][1].as_deref().unwrap_or("").contains("stopped"), "{stopped:?}");

    // Not resumed twice: the next sweep starts from the first order.
    assert_eq!(app.reconcile().await["checked"]["orders"], 30);
}

/// A running sweep says what it checks now; one stopped past its orders and
/// wallets is resumed from the phase it was in, not from its orders.
#[tokio::test]
async fn a_sweep_stopped_past_its_orders_says_so_and_is_resumed_from_that_phase() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    for i in 0..3 {
        place_processed(&app, &format!("o-{i}"), "code-A").await;
    }
    let engine = engine_on(open_store(&app.config, 2).await.into(), Duration::from_secs(60));
    let Started::Started(run) = engine.start_reconcile(RunKind::Full, None).await.expect("claim") else {
        panic!("nothing else runs")
    };
    let id = run.id.to_string();
    let status = app.admin_get("/admin/reconcile").await;
    assert_eq!(status["running"]["phase"], "orders", "{status}");

    // It stored its report as its month check began (its orders counted
    // 0 here, so that checking them again would show), and died.
    let report = json!({"checked": {"affiliates": 0, "buyers": 0, "orders": 0, "events": 0, "payouts": 0, "wallets": 0},
                        "violations": [], "total": 0, "phase": "months"});
    app.db
        .exec(
            "UPDATE reconcile_runs SET done_count = 3, total_count = 3, report = ? WHERE id = ?",
            &[&report.to_string(), &id],
        )
        .await;
    let status = app.admin_get("/admin/reconcile").await;
    assert_eq!(
        (&status["running"]["phase"], &status["running"]["done"], &status["running"]["eta_seconds"]),
        (&json!("months"), &json!(3), &Value::Null),
        "past its orders there is no estimate: {status}"
    );
    app.db.set_time("reconcile_runs", "heartbeat_at", &id, chrono::Utc::now() - chrono::TimeDelta::minutes(5)).await;

    let resumed = app.reconcile().await;
    assert_ne!(resumed["run_id"].as_u64(), Some(run.id));
    assert_eq!(resumed["ok"], true, "{resumed}");
    assert_eq!(resumed["checked"]["orders"], 0, "its orders are not checked again: {resumed}");
    assert_eq!(resumed["checked"]["months"], 1, "A's month, once: {resumed}");
    assert_eq!(resumed["checked"]["affiliates"], 1, "then the totals: {resumed}");
    assert_eq!(app.reconcile().await["checked"]["orders"], 3, "the next sweep checks them");
}

/// A sweep busy with one long read (held here before its stored totals,
/// which took minutes at 10 M orders) keeps beating its heartbeat, so it is
/// not taken for stopped: another request finds it running.
#[tokio::test]
async fn a_sweep_busy_with_one_long_read_keeps_its_heartbeat() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    place_processed(&app, "o-1", "code-A").await;
    app.faults.hold_reconcile_totals(true);
    let r = app.admin_post("/admin/reconcile", &json!({"kind": "full"})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let run_id = r.json::<Value>().await.expect("json")["run_id"].as_u64().expect("run id");
    let running = || async { app.admin_get("/admin/reconcile").await["running"].clone() };
    let held = poll(Duration::from_secs(30), || async { running().await["phase"] == "totals" }).await;
    assert!(held, "the sweep reaches its totals: {}", running().await);
    let time =
        |v: &Value| chrono::DateTime::parse_from_rfc3339(v["heartbeat_at"].as_str().expect("heartbeat")).unwrap();
    let first = time(&running().await);
    let beaten = poll(Duration::from_secs(30), || async { time(&running().await) > first }).await;
    assert!(beaten, "the heartbeat moves while the run waits: {}", running().await);
    let again: Value = app.admin_post("/admin/reconcile", &json!({})).await.json().await.expect("json");
    assert_eq!(again, json!({"run_id": run_id, "started": false}));

    app.faults.hold_reconcile_totals(false);
    let finished = poll(Duration::from_secs(30), || async {
        app.admin_get("/admin/reconcile").await["last"]["run_id"].as_u64() == Some(run_id)
    })
    .await;
    assert!(finished, "the sweep finishes once released");
    let last = app.admin_get("/admin/reconcile").await["last"].clone();
    assert_eq!((last["status"].as_str(), last["ok"].as_bool()), (Some("done"), Some(true)), "{last}");
}

#[tokio::test]
async fn one_run_at_a_time_on_every_instance() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    place_processed(&app, "o-1", "code-A").await;
    let other = engine_on(open_store(&app.config, 2).await.into(), Duration::from_secs(60));
    let Started::Started(run) = other.start_reconcile(RunKind::Full, None).await.expect("claim") else {
        panic!("nothing else runs")
    };

    let r = app.admin_post("/admin/reconcile", &json!({"kind": "incremental"})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body, json!({"run_id": run.id, "started": false}), "the other instance's run is running");
    let status = app.admin_get("/admin/reconcile").await;
    assert_eq!(status["running"]["run_id"], run.id);
    assert_eq!(status["running"]["kind"], "full");

    let report = other.run_reconcile(*run.clone()).await.expect("the run");
    assert!(report.ok);
    let r = app.admin_post("/admin/reconcile", &json!({})).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["started"], true, "{body}");
    let started = body["run_id"].as_u64().expect("run id");
    assert!(started > run.id);
    let finished = poll(Duration::from_secs(30), || async {
        app.admin_get("/admin/reconcile").await["last"]["run_id"].as_u64() == Some(started)
    })
    .await;
    assert!(finished, "the started run finishes in the background");
    let last = app.admin_get("/admin/reconcile").await["last"].clone();
    assert_eq!(
        (last["kind"].as_str(), last["status"].as_str(), last["ok"].as_bool()),
        (Some("full"), Some("done"), Some(true))
    );
}

#[tokio::test]
async fn the_schedule_runs_a_full_sweep_first_then_incremental_runs() {
    let app = spawn_app_with(|c| c.reconcile_every_ms = 300, Default::default()).await;
    app.create_affiliate("A", None).await;
    place_processed(&app, "o-1", "code-A").await;
    let ran = poll(Duration::from_secs(30), || async {
        app.db.int("SELECT COUNT(*) FROM reconcile_runs WHERE kind = 'incremental' AND status = 'done'", &[]).await >= 2
    })
    .await;
    assert!(ran, "incremental runs follow each other");
    let kinds = app.db.column("SELECT kind FROM reconcile_runs ORDER BY id", &[]).await;
    assert_eq!(kinds[0], "full", "a full sweep first: {kinds:?}");
    assert!(kinds[1..].iter().all(|k| k == "incremental"), "then incremental ones only: {kinds:?}");

    let metrics = app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("komisi_reconcile_violations 0"), "{metrics}");
    for kind in ["full", "incremental"] {
        let line = format!("komisi_reconcile_last_success_timestamp_seconds{{kind=\"{kind}\"}}");
        let at: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("{line} in {metrics}"))
            .trim()
            .parse()
            .expect("a timestamp");
        assert!(at > chrono::Utc::now().timestamp() as f64 - 60.0, "{line} is recent: {at}");
    }
}

/// The buyers a full sweep replays are paged from two sources (redemptions,
/// and wallet entries or expiring lots): each page is the union's next
/// buyers in order, each buyer once, and a buyer with neither is left out.
#[tokio::test]
async fn wallet_buyers_are_paged_in_order_from_redemptions_and_wallet_entries() {
    let app = spawn_app().await;
    let at = "2026-01-01 00:00:00";
    for (buyer, order, event, expires) in [
        ("w-1", "", "e-1", None),
        ("w-2", "", "e-2", None),
        ("w-2", "", "e-3", None),
        ("w-3", "o-3", "e-4", Some(at)),
        ("w-4", "o-4", "e-5", None),
    ] {
        // (The helper binds text only: the NULL is written into the statement.)
        let expires = expires.map_or("NULL".to_owned(), |t| format!("'{t}'"));
        let sql = format!(
            "INSERT INTO reward_entries (buyer_id, order_id, event_id, kind, points, created_at, expires_at) \
             VALUES (?, ?, ?, 'points', 1, ?, {expires})"
        );
        app.db.exec(&sql, &[buyer, order, event, at]).await;
    }
    for buyer in ["w-2", "w-5", "w-6"] {
        app.db
            .exec(
                "INSERT INTO redemptions (buyer_id, id, points, order_id, status, value, program_version, hold_until, \
                 created_at, updated_at) VALUES (?, 'r-1', 1, NULL, 'captured', '1', 1, ?, ?, ?)",
                &[buyer, at, at, at],
            )
            .await;
    }
    let store = open_store(&app.config, 1).await;
    let mut pages = Vec::new();
    let mut after = String::new();
    loop {
        let page: Vec<String> =
            store.wallet_buyers(&after, 2).await.expect("a page").into_iter().map(|b| b.to_string()).collect();
        let last = page.len() < 2;
        after = page.last().cloned().unwrap_or_default();
        pages.push(page);
        if last {
            break;
        }
    }
    assert_eq!(pages, [vec!["w-1", "w-2"], vec!["w-3", "w-5"], vec!["w-6"]]);
}

/// The full sweep checks buyers' points a range of buyer ids at a time:
/// with more buyers than two ranges hold, each wrong balance is found once,
/// at the ranges' edges too, and a right one never.
#[tokio::test]
async fn a_full_sweep_checks_every_buyers_points_range_by_range() {
    let app = spawn_app().await;
    app.create_affiliate("A", None).await;
    place_processed(&app, "o-1", "code-A").await; // buyer-o-1, with reward entries
    let at = "2026-01-01 00:00:00";
    for thousand in 0..12 {
        let rows: Vec<String> = (0..1000).map(|i| format!("('p-{:05}', '0', '{at}')", thousand * 1000 + i)).collect();
        app.db.exec(&format!("INSERT INTO buyers (id, points, updated_at) VALUES {}", rows.join(", ")), &[]).await;
    }
    let right = app.reconcile().await;
    assert_eq!((right["ok"].as_bool(), right["checked"]["buyers"].as_u64()), (Some(true), Some(12_001)), "{right}");

    // In id order buyer-o-1 comes first; a range holds 5 000 buyers, so
    // p-04998 ends the first range and p-04999 starts the second.
    let wrong = ["p-00000", "p-04998", "p-04999", "p-09998", "p-09999", "p-11999"];
    for id in wrong {
        app.db.exec("UPDATE buyers SET points = '7' WHERE id = ?", &[id]).await;
    }
    app.db.exec("UPDATE buyers SET points = '999999' WHERE id = 'buyer-o-1'", &[]).await;
    let caught = app.reconcile().await;
    let mut expected = vec![("points_mismatch".to_owned(), "buyer-o-1".to_owned())];
    expected.extend(wrong.iter().map(|id| ("points_mismatch".to_owned(), id.to_string())));
    assert_eq!(violations(&caught), expected, "{caught}");
    let first = &caught["violations"][0]["detail"];
    assert!(first.as_str().unwrap().starts_with("stored 999999 points but reward entries sum to "), "{first}");
    assert_ne!(first.as_str().unwrap(), "stored 999999 points but reward entries sum to 0", "o-1's entries are summed");
}

/// An incremental run checks a touched affiliate's balances without reading
/// its history: paid from its completed payout items, approved from its
/// approved entries outside a batch or in an open one, pending as the rest
/// of its total. A wrong balance of each kind is caught; a pending entry
/// rewritten in place is not read (the full sweep finds it).
#[tokio::test]
async fn an_incremental_run_checks_balances_from_payout_items_and_approved_entries() {
    let app = spawn_app().await;
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    app.create_affiliate("A", None).await;
    let complete = |id: &'static str| {
        let app = &app;
        async move {
            assert_eq!(crate::lifecycle::lifecycle(app, id, "complete").await.0, StatusCode::ACCEPTED, "{id}");
            app.processed(id).await;
        }
    };
    // o-0 paid in a completed batch, o-1 approved in an open one, o-2
    // approved outside any batch, o-3 pending; o-0 twice the others, so no
    // balance equals another.
    app.accept(&simple_order("o-0", "buyer-o-0", Some("code-A"), "200000")).await;
    app.processed("o-0").await;
    complete("o-0").await;
    let paid: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "1"})).await.json().await.unwrap();
    app.admin_post(&format!("/admin/payouts/{}/complete", paid["id"]), &json!({})).await;
    place_processed(&app, "o-1", "code-A").await;
    complete("o-1").await;
    let batch: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "1"})).await.json().await.unwrap();
    assert_eq!((batch["status"].as_str(), batch["items"][0]["affiliate_id"].as_str()), (Some("open"), Some("A")));
    place_processed(&app, "o-2", "code-A").await;
    complete("o-2").await;
    place_processed(&app, "o-3", "code-A").await;
    for status in ["pending", "approved", "paid"] {
        assert!(app.balance("A", status).await > d("0"), "A has a {status} balance");
    }
    let in_open = "SELECT COUNT(*) FROM ledger_entries WHERE status = 'approved' AND payout_id IS NOT NULL";
    assert!(app.db.int(in_open, &[]).await > 0, "approved entries in the open batch");
    let full = app.reconcile().await;
    assert_eq!(full["ok"], true, "{full}");

    place_processed(&app, "o-4", "code-A").await;
    let incremental = app.reconcile_kind("incremental").await;
    assert_eq!(incremental["ok"], true, "every balance of A adds up: {incremental}");
    assert_eq!(incremental["checked"]["affiliates"], 1, "{incremental}");

    for (status, by) in [("approved", "3"), ("paid", "5"), ("pending", "2")] {
        app.db.add_money("affiliates", status, "A", d(by)).await;
        let order = format!("o-{status}");
        app.accept(&simple_order(&order, "buyer-x", Some("code-A"), "100000")).await;
        app.processed(&order).await;
        let caught = app.reconcile_kind("incremental").await;
        assert_eq!(violations(&caught), vec![("balance_mismatch".to_string(), "A".to_string())], "{status}: {caught}");
        app.db.add_money("affiliates", status, "A", -d(by)).await;
    }
    app.assert_reconciled().await;

    // o-3's pending entry rewritten in place: no incremental run reads it,
    // the full sweep does.
    let entry = app.db.one("SELECT id FROM ledger_entries WHERE order_id = 'o-3' AND affiliate_id = 'A'", &[]).await;
    app.db.add_money("ledger_entries", "amount", &entry, d("1")).await;
    place_processed(&app, "o-5", "code-A").await;
    let incremental = app.reconcile_kind("incremental").await;
    assert_eq!(incremental["ok"], true, "no pending entry is read: {incremental}");
    let full = app.reconcile().await;
    let kinds: std::collections::BTreeSet<(String, String)> = violations(&full).into_iter().collect();
    assert!(kinds.contains(&("balance_mismatch".to_string(), "A".to_string())), "{full}");
    assert!(kinds.contains(&("ledger_differs_from_entitlement".to_string(), "o-3".to_string())), "{full}");
}

/// An entry whose status disagrees with its batch's (approved in a completed
/// batch, paid in an open one) is named by the full sweep, even when the
/// balances were moved to match it.
#[tokio::test]
async fn a_full_sweep_names_entries_whose_status_disagrees_with_their_batch() {
    let app = spawn_app().await;
    app.set_program(|p| p["holding_days"] = json!(0)).await;
    app.create_affiliate("A", None).await;
    app.create_affiliate("B", None).await;
    for (order, code) in [("o-1", "code-A"), ("o-2", "code-B")] {
        place_processed(&app, order, code).await;
        assert_eq!(crate::lifecycle::lifecycle(&app, order, "complete").await.0, StatusCode::ACCEPTED);
        app.processed(order).await;
    }
    let first: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "1"})).await.json().await.unwrap();
    app.admin_post(&format!("/admin/payouts/{}/complete", first["id"]), &json!({})).await;
    place_processed(&app, "o-3", "code-A").await;
    assert_eq!(crate::lifecycle::lifecycle(&app, "o-3", "complete").await.0, StatusCode::ACCEPTED);
    app.processed("o-3").await;
    let open: Value = app.admin_post("/admin/payouts", &json!({"min_amount": "1"})).await.json().await.unwrap();
    assert_eq!(open["status"], "open");
    assert_eq!(app.reconcile().await["ok"], true);

    // B's paid entry back to approved (its balances moved along), and A's
    // entry in the open batch marked paid.
    let (completed, open) = (first["id"].to_string(), open["id"].to_string());
    let b = app.db.one("SELECT id FROM ledger_entries WHERE affiliate_id = 'B' AND payout_id = ?", &[&completed]).await;
    let amount = d(&app.db.one("SELECT CAST(amount AS CHAR) FROM ledger_entries WHERE id = ?", &[&b]).await);
    app.db.exec("UPDATE ledger_entries SET status = 'approved' WHERE id = ?", &[&b]).await;
    app.db.add_money("affiliates", "paid", "B", -amount).await;
    app.db.add_money("affiliates", "approved", "B", amount).await;
    let a = app.db.one("SELECT id FROM ledger_entries WHERE affiliate_id = 'A' AND payout_id = ?", &[&open]).await;
    let amount = d(&app.db.one("SELECT CAST(amount AS CHAR) FROM ledger_entries WHERE id = ?", &[&a]).await);
    app.db.exec("UPDATE ledger_entries SET status = 'paid' WHERE id = ?", &[&a]).await;
    app.db.add_money("affiliates", "approved", "A", -amount).await;
    app.db.add_money("affiliates", "paid", "A", amount).await;

    let caught = app.reconcile().await;
    let named: Vec<(String, String, String)> = caught["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| (v["kind"].as_str().unwrap().to_owned(), v["affiliate_id"].to_string(), v["payout_id"].to_string()))
        .collect();
    assert_eq!(
        named,
        vec![
            ("payout_entry_status".to_owned(), "\"B\"".to_owned(), completed.clone()),
            ("payout_entry_status".to_owned(), "\"A\"".to_owned(), open.clone()),
        ],
        "{caught}"
    );
    assert_eq!(caught["violations"][0]["detail"], format!("entry {b} is approved in a batch that is completed"));
    assert_eq!(caught["violations"][1]["detail"], format!("entry {a} is paid in a batch that is open"));
}
