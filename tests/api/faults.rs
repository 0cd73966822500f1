//! Failure injection on every path that touches money. Each test ends with the
//! ledger exactly right: nothing lost, nothing paid twice, nothing half-applied.
use crate::helpers::*;
use komisi::engine::faults::Faults;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// Leases and claims far beyond any test's length: only the recovery path under
/// test (start-up re-journaling, the journal-loss check) can rescue an event.
fn no_lease_rescue(c: &mut komisi::config::Config) {
    c.redeliver_after_ms = 600_000;
    c.claim_idle_ms = 600_000;
}

async fn event_row(app: &TestApp, order_id: &str) -> (String, u32, Vec<String>) {
    let rows = app.db.rows("SELECT id, status, attempts FROM events WHERE order_id = ?", &[order_id]).await;
    assert_eq!(rows.len(), 1, "one event of {order_id}: {rows:?}");
    let cell = |i: usize| rows[0][i].clone().expect("not null");
    let errors = app.db.column("SELECT error FROM event_attempts WHERE event_id = ? ORDER BY id", &[&cell(0)]).await;
    (cell(1), cell(2).parse().expect("attempts"), errors)
}

/// A real database error on every insert into and update of `table`
/// (triggers, until [`allow_writes`]).
async fn refuse_writes(app: &TestApp, table: &str) {
    for op in ["INSERT", "UPDATE"] {
        let name = format!("refuse_{table}_{}", op.to_lowercase());
        let sql = match test_backend() {
            TestBackend::MySql => format!(
                "CREATE TRIGGER {name} BEFORE {op} ON {table} FOR EACH ROW \
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected'"
            ),
            TestBackend::Sqlite => {
                format!("CREATE TRIGGER {name} BEFORE {op} ON {table} BEGIN SELECT RAISE(ABORT, 'injected'); END")
            }
        };
        app.db.exec(&sql, &[]).await;
    }
}

async fn allow_writes(app: &TestApp, table: &str) {
    for op in ["insert", "update"] {
        app.db.exec(&format!("DROP TRIGGER refuse_{table}_{op}"), &[]).await;
    }
}

async fn assert_worked_example_paid_once(app: &TestApp, order_id: &str) {
    assert_eq!(
        app.order_amounts(order_id).await,
        vec![
            ("A".into(), "commission".into(), d("21500")),
            ("B".into(), "commission".into(), d("64500")),
            ("C".into(), "commission".into(), d("95000")),
        ]
    );
    assert_eq!(app.balance("C", "pending").await, d("95000"));
    assert_eq!(app.balance("B", "pending").await, d("64500"));
    assert_eq!(app.balance("A", "pending").await, d("21500"));
    assert_eq!(app.points("x").await, 26500);
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_database_error_mid_transaction_rolls_back_and_the_retry_applies_once() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.faults.fail_db_mid_tx(1);
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let (status, attempts, errors) = event_row(&app, "o-1").await;
    assert_eq!((status.as_str(), attempts), ("done", 2));
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("injected failure"), "{errors:?}");
    assert_worked_example_paid_once(&app, "o-1").await;
}

/// A real database error among an event transaction's writes: a trigger
/// refuses the affiliates' report rows, written after the ledger, the
/// rewards, the event and the order, before the balances. None of them
/// stays; once the trigger is gone the retry pays the order exactly once.
#[tokio::test]
async fn a_database_error_among_an_events_writes_keeps_none_of_them_and_the_retry_applies_once() {
    let app = spawn_app_with(|c| c.max_attempts = 1_000, Faults::default()).await;
    abc_tree(&app).await;
    refuse_writes(&app, "report_affiliate_days").await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    let failed = poll(Duration::from_secs(20), || async { event_row(&app, "o-1").await.2.len() >= 2 }).await;
    assert!(failed, "the event's attempts fail while the trigger refuses its report rows");
    let (status, _, errors) = event_row(&app, "o-1").await;
    assert_ne!(status, "done");
    assert!(errors.iter().all(|e| e.contains("injected")), "{errors:?}");
    let count = |sql: &'static str| app.db.int(sql, &[]);
    assert_eq!(count("SELECT COUNT(*) FROM ledger_entries").await, 0, "no ledger row stays");
    assert_eq!(count("SELECT COUNT(*) FROM reward_entries").await, 0, "no reward row stays");
    assert_eq!(count("SELECT COUNT(*) FROM report_affiliate_days").await, 0);
    assert_eq!(
        count("SELECT COUNT(*) FROM report_buckets").await,
        0,
        "the statement before the refused one is gone too"
    );
    assert_eq!(count("SELECT COUNT(*) FROM orders WHERE id = 'o-1' AND commission_status <> 'processed'").await, 1);
    for a in ["A", "B", "C"] {
        assert_eq!(app.balance(a, "pending").await, d("0"));
    }
    assert_eq!(app.points("x").await, 0);

    allow_writes(&app, "report_affiliate_days").await;
    app.processed("o-1").await;
    assert_worked_example_paid_once(&app, "o-1").await;
    app.assert_reconciled().await;
}

#[tokio::test]
async fn an_event_that_keeps_failing_goes_dead_with_its_history_and_writes_nothing() {
    let app = spawn_app_with(|c| c.max_attempts = 3, Faults::default()).await;
    abc_tree(&app).await;
    app.faults.fail_db_mid_tx(u32::MAX);
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    let order = app.order_in_status("o-1", "dead", Duration::from_secs(30)).await;
    assert_eq!(order["events"][0]["status"], "dead");
    let (status, attempts, errors) = event_row(&app, "o-1").await;
    assert_eq!((status.as_str(), attempts, errors.len()), ("dead", 3, 3));
    // Every attempt wrote ledger rows before failing; none survived.
    assert!(order["commissions"].as_array().unwrap().is_empty());
    assert!(order["rewards"].as_array().unwrap().is_empty());
    for a in ["A", "B", "C"] {
        assert_eq!(app.balance(a, "pending").await, d("0"));
    }
    assert_eq!(app.points("x").await, 0);
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_panicking_commission_actor_is_restarted_and_the_event_applied_once() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.faults.panic_in_actor(1);
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    // A second order of the same partition, queued behind the one that panics.
    app.accept(&simple_order("o-2", "y", Some("code-C"), "100000")).await;
    app.processed("o-1").await;
    app.processed("o-2").await;
    let (status, attempts, errors) = event_row(&app, "o-1").await;
    assert_eq!(status, "done");
    assert_eq!(attempts, 2, "the panic counts as one failed attempt: {errors:?}");
    assert!(errors[0].contains("panicked"), "{errors:?}");
    assert_eq!(app.order_amounts("o-2").await.len(), 3);
    assert_eq!(app.balance("C", "pending").await, d("105000"));
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_panicking_batch_worker_is_restarted_and_its_events_are_applied_once() {
    // Orders of several partitions, so the worker's batch holds several events.
    let app = spawn_app_with(|c| c.event_linger_ms = Some(200), Faults::default()).await;
    abc_tree(&app).await;
    for a in ["P", "Q", "R"] {
        app.create_affiliate(a, None).await;
    }
    app.faults.panic_in_batch(1);
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    for (n, a) in ["P", "Q", "R"].iter().enumerate() {
        app.accept(&simple_order(&format!("o-{a}"), &format!("b-{n}"), Some(&format!("code-{a}")), "100000")).await;
    }
    app.processed("o-1").await;
    for a in ["P", "Q", "R"] {
        app.processed(&format!("o-{a}")).await;
        assert_eq!(app.order_amounts(&format!("o-{a}")).await, vec![(a.to_string(), "commission".into(), d("10000"))]);
        assert_eq!(app.balance(a, "pending").await, d("10000"));
    }
    // The panic took no attempt: the worker ran its events again, one by one.
    for order in ["o-1", "o-P", "o-Q", "o-R"] {
        let (status, attempts, errors) = event_row(&app, order).await;
        assert_eq!((status.as_str(), attempts), ("done", 1), "{order}: {errors:?}");
    }
    assert_worked_example_paid_once(&app, "o-1").await;
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let restarts: f64 = metrics
        .lines()
        .find(|l| l.starts_with("komisi_worker_restarts_total{worker=\"apply\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("worker restart counter exported");
    assert!(restarts >= 1.0, "the restart was counted: {restarts}");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn losing_every_redis_key_after_intake_loses_no_event() {
    if !needs_redis("losing_every_redis_key_after_intake_loses_no_event") {
        return;
    }
    // One entry in flight at a time and slow processing, so most entries are
    // still unread in Redis when the keys are deleted.
    let app = spawn_app_with(
        |c| {
            no_lease_rescue(c);
            c.max_inflight = 1;
        },
        Faults::with_commission_delay(Duration::from_millis(150)),
    )
    .await;
    abc_tree(&app).await;
    for n in 0..10 {
        app.accept(&simple_order(&format!("o-{n}"), &format!("buyer-{n}"), Some("code-C"), "100000")).await;
    }
    let deleted = app.delete_redis_keys().await;
    assert!(deleted > 0, "the journal keys existed");
    for n in 0..10 {
        app.processed(&format!("o-{n}")).await;
    }
    // 10 × 10 000 (C), 3 000 (B), 1 000 (A); milestone 25 000 for C's 3rd order.
    assert_eq!(app.balance("C", "pending").await, d("125000"));
    assert_eq!(app.balance("B", "pending").await, d("30000"));
    assert_eq!(app.balance("A", "pending").await, d("10000"));
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_crash_between_order_commit_and_journal_write_loses_nothing() {
    let mut app = spawn_app_with(no_lease_rescue, Faults::default()).await;
    abc_tree(&app).await;
    app.faults.hold_after_commit(true);
    let order = worked_example_order("o-1", "x", "code-C");
    let client = app.client.clone();
    let url = app.url("/v1/orders");
    let pending = tokio::spawn(async move { client.post(url).bearer_auth(STOREFRONT_KEY).json(&order).send().await });
    let db = app.db.clone();
    let committed = poll(Duration::from_secs(10), || async {
        db.int("SELECT COUNT(*) FROM events WHERE order_id = 'o-1'", &[]).await == 1
    })
    .await;
    assert!(committed, "the order committed");
    app.kill().await;
    assert!(pending.await.expect("task").is_err(), "the client never got an answer");
    assert_eq!(event_row(&app, "o-1").await.0, "pending");

    app.restart(Faults::default()).await;
    app.processed("o-1").await;
    // The storefront retries the request it never got an answer to.
    let (status, _) = app.place(&worked_example_order("o-1", "x", "code-C")).await;
    assert_eq!(status, StatusCode::OK);
    assert_worked_example_paid_once(&app, "o-1").await;
}

#[tokio::test]
async fn orders_taken_while_the_journal_is_down_are_applied_when_it_is_back() {
    let mut app = spawn_app_journal_down(no_lease_rescue, Faults::default()).await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    let order = app.get_json("/v1/orders/o-1").await;
    assert_eq!(order["commission_status"], "pending");
    app.kill().await;
    app.journal_back();
    app.restart(Faults::default()).await;
    app.processed("o-1").await;
    assert_worked_example_paid_once(&app, "o-1").await;
}

#[tokio::test]
async fn a_killed_instance_with_events_in_flight_is_caught_up_by_the_next_one() {
    let mut app = spawn_app_with(no_lease_rescue, Faults::with_commission_delay(Duration::from_millis(100))).await;
    abc_tree(&app).await;
    for n in 0..10 {
        app.accept(&simple_order(&format!("o-{n}"), &format!("buyer-{n}"), Some("code-C"), "100000")).await;
    }
    // Killed while entries sit unacknowledged in its actors.
    app.kill().await;
    app.restart(Faults::default()).await;
    for n in 0..10 {
        app.processed(&format!("o-{n}")).await;
    }
    assert_eq!(app.balance("C", "pending").await, d("125000"));
    assert_eq!(app.balance("B", "pending").await, d("30000"));
    assert_eq!(app.balance("A", "pending").await, d("10000"));
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_events() {
    let mut app = spawn_app_with(|_| {}, Faults::with_commission_delay(Duration::from_millis(50))).await;
    abc_tree(&app).await;
    for n in 0..5 {
        app.accept(&simple_order(&format!("o-{n}"), &format!("buyer-{n}"), Some("code-C"), "100000")).await;
    }
    app.shutdown().await;
    let open = app
        .db
        .rows("SELECT id, status, attempts, last_error FROM events WHERE status <> 'done' ORDER BY id", &[])
        .await;
    assert!(open.is_empty(), "every accepted event was applied before exit; open: {open:?}");
    app.assert_ledger_consistent().await;
}

/// Entries an actor left unapplied and unacknowledged — it found their
/// partition's fence gone between the read and the apply, as when a lease
/// is lost to a slow tick and taken back — are read by no one again (a
/// read returns new entries only; idle claims come seconds later): the
/// drain claims them and applies them before the exit.
#[tokio::test]
async fn graceful_shutdown_applies_entries_an_actor_left_unacknowledged() {
    let mut app = spawn_app_with(|c| c.claim_idle_ms = 60_000, Faults::default()).await;
    abc_tree(&app).await;
    app.faults.unfence_entries(3);
    for n in 0..3 {
        app.accept(&simple_order(&format!("o-{n}"), &format!("buyer-{n}"), Some("code-C"), "100000")).await;
    }
    // Each entry is read and left: none is applied while the instance runs.
    let left = poll(Duration::from_secs(10), || async {
        app.faults.unfenced_left() == 0 && app.tree_stats().await.inflight == 0
    })
    .await;
    assert!(left, "the actors took the three entries");
    let open = app.db.int("SELECT COUNT(*) FROM events WHERE status <> 'done'", &[]).await;
    assert_eq!(open, 3, "the entries were left unapplied");
    app.shutdown().await;
    let open = app.db.int("SELECT COUNT(*) FROM events WHERE status <> 'done'", &[]).await;
    assert_eq!(open, 0, "every accepted event was applied before exit");
    app.assert_ledger_consistent().await;
}

/// A shutdown just after the start, before the lease tick took the
/// partitions: the drain takes them and reads the journal to the end.
#[tokio::test]
async fn graceful_shutdown_before_the_partitions_are_taken_still_drains() {
    let mut app = spawn_app_with(|_| {}, Faults::with_leases_held()).await;
    abc_tree(&app).await;
    for n in 0..3 {
        app.accept(&simple_order(&format!("o-{n}"), &format!("buyer-{n}"), Some("code-C"), "100000")).await;
    }
    let open = app.db.int("SELECT COUNT(*) FROM events WHERE status <> 'done'", &[]).await;
    assert_eq!(open, 3, "nothing is applied while no partition is owned");
    app.faults.hold_leases(false);
    app.shutdown().await;
    let open = app.db.int("SELECT COUNT(*) FROM events WHERE status <> 'done'", &[]).await;
    assert_eq!(open, 0, "every accepted event was applied before exit");
    app.assert_ledger_consistent().await;
}

/// A shutdown while the partitions are being taken again (their leases lost
/// to ticks slower than the TTL, as on a loaded machine): the drain waits
/// until they are owned and reads them to the end, not one tick.
#[tokio::test]
async fn graceful_shutdown_while_lost_leases_are_taken_again_still_drains() {
    let mut app = spawn_app_with(|_| {}, Faults::default()).await;
    abc_tree(&app).await;
    app.faults.hold_leases(true);
    app.faults.lose_leases();
    while app.faults.losing_leases() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in 0..3 {
        app.accept(&simple_order(&format!("o-{n}"), &format!("buyer-{n}"), Some("code-C"), "100000")).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = app.db.int("SELECT COUNT(*) FROM events WHERE status <> 'done'", &[]).await;
    assert_eq!(open, 3, "nothing is applied while no partition is owned");
    // The leases come back only well after the drain began.
    let faults = app.faults.clone();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        faults.hold_leases(false);
    });
    app.shutdown().await;
    release.await.expect("release task");
    let open = app.db.int("SELECT COUNT(*) FROM events WHERE status <> 'done'", &[]).await;
    assert_eq!(open, 0, "every accepted event was applied before exit");
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn graceful_shutdown_completes_while_the_journal_is_unreachable() {
    let mut app = spawn_app_without_journal().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    // The drain can neither journal nor read; it must end at once, not at its 30 s timeout.
    let stopped = tokio::time::timeout(Duration::from_secs(15), app.shutdown()).await;
    assert!(stopped.is_ok(), "SIGTERM-style shutdown hung");
    // Nothing was lost: the order is durable and pending for the next instance.
    let status = app.db.one("SELECT status FROM events WHERE order_id = 'o-1'", &[]).await;
    assert_eq!(status, "pending");
}

/// A real database error on the intake transaction's last statement (a
/// trigger refusing the event tally, after the orders, items, events and
/// month counters are written): the request fails, none of it stays — no
/// order, no month counted, no event tallied — and the retry lands once.
#[tokio::test]
async fn an_intake_failing_at_its_last_statement_keeps_nothing_and_the_retry_lands_once() {
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let months = || app.db.rows("SELECT affiliate_id, month_start, volume, orders FROM affiliate_months", &[]);
    let tallies = || app.db.rows("SELECT type, shard, n FROM event_tallies ORDER BY type, shard", &[]);
    let (months_before, tallies_before) = (months().await, tallies().await);

    refuse_writes(&app, "event_tallies").await;
    let (status, body) = app.place(&worked_example_order("o-2", "x", "code-C")).await;
    assert!(status.is_server_error(), "{status} {body}");
    assert_eq!(app.db.int("SELECT COUNT(*) FROM orders WHERE id = 'o-2'", &[]).await, 0);
    assert_eq!(app.db.int("SELECT COUNT(*) FROM order_items WHERE order_id = 'o-2'", &[]).await, 0);
    assert_eq!(app.db.int("SELECT COUNT(*) FROM events WHERE order_id = 'o-2'", &[]).await, 0);
    assert_eq!(months().await, months_before, "no month counted the refused order");
    assert_eq!(tallies().await, tallies_before);

    allow_writes(&app, "event_tallies").await;
    assert_eq!(app.place(&worked_example_order("o-2", "x", "code-C")).await.0, StatusCode::ACCEPTED);
    assert_eq!(app.place(&worked_example_order("o-2", "x", "code-C")).await.0, StatusCode::OK, "a repeat");
    app.processed("o-2").await;
    assert_eq!(app.db.int("SELECT COUNT(*) FROM events WHERE order_id = 'o-2'", &[]).await, 1);
    let orders: Vec<String> = app.db.column("SELECT orders FROM affiliate_months WHERE affiliate_id = 'C'", &[]).await;
    assert_eq!(orders, ["2"], "C's month counts both orders once");
    app.assert_reconciled().await;
}

/// A refund whose transaction loses a real deadlock is taken again at once
/// and answered 202, not 500; the refund is applied once. Another
/// transaction (heavier, so InnoDB rolls the refund's back) holds the refund
/// row's key uncommitted, waits until the refund's transaction, holding the
/// order's lock, waits for that key, then asks for the order's lock.
#[tokio::test]
async fn a_refund_that_loses_a_deadlock_is_retried_and_applied_once() {
    use sqlx::{Connection, Executor};
    if !needs_mysql_backend("a_refund_that_loses_a_deadlock", "it makes an InnoDB deadlock") {
        return;
    }
    let app = spawn_app().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    app.processed("o-1").await;
    let TestDb::MySql(pool) = &app.db else { unreachable!("the MySQL backend") };
    pool.execute("CREATE TABLE ballast (n INT PRIMARY KEY)").await.unwrap();
    let mut other = pool.acquire().await.unwrap().detach();
    let mut other_tx = other.begin().await.unwrap();
    // Weight: InnoDB rolls back the transaction that changed fewer rows.
    other_tx.execute("INSERT INTO ballast SELECT seq FROM seq_1_to_200").await.unwrap();
    other_tx
        .execute(
            "INSERT INTO refunds (order_id, refund_id, request_hash, event_id, created_at) \
             VALUES ('o-1', 'r-1', REPEAT('x', 32), 'held-by-the-test', NOW(6))",
        )
        .await
        .unwrap();

    let refund = {
        let (client, url) = (app.client.clone(), app.url("/v1/orders/o-1/refunds"));
        tokio::spawn(async move {
            let body = json!({"refund_id": "r-1", "items": [{"sku": "voucher", "quantity": 1}]});
            let r = client.post(url).bearer_auth(STOREFRONT_KEY).json(&body).send().await.unwrap();
            (r.status(), r.text().await.unwrap_or_default())
        })
    };
    let waiting = poll(Duration::from_secs(10), || async {
        let sql = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                   WHERE INFO LIKE '%INSERT INTO refunds%' AND ID <> CONNECTION_ID()";
        app.db.int(sql, &[]).await >= 1
    })
    .await;
    if !waiting && refund.is_finished() {
        panic!("the refund did not wait: {:?}", refund.await.unwrap());
    }
    assert!(waiting, "the refund's transaction waits for the held key");
    // The cycle: this waits for the order the refund holds; InnoDB ends the refund's attempt.
    other_tx.execute("SELECT id FROM orders WHERE id = 'o-1' FOR UPDATE").await.unwrap();
    other_tx.rollback().await.unwrap();
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), refund).await.expect("answered").unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    app.processed("o-1").await;
    assert_eq!(app.db.int("SELECT COUNT(*) FROM refunds WHERE order_id = 'o-1'", &[]).await, 1);
    assert_eq!(
        app.db.int("SELECT COUNT(*) FROM events WHERE order_id = 'o-1' AND type = 'order.refunded'", &[]).await,
        1
    );
    // The voucher (gift-card, no commission) refunded: the commissions stand as placed.
    assert_worked_example_paid_once(&app, "o-1").await;
    app.assert_reconciled().await;
}
