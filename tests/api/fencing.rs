//! Fencing tokens (scale-out): an event transaction commits only under the
//! current token of its journal partition; a takeover moves the token on
//! after the old owner's transactions end; recovery reads only the owned
//! partitions. MySQL only — the embedded mode is one instance and fences
//! nothing (its check always passes).
use crate::helpers::*;
use komisi::domain::event::{EventId, EventRef};
use komisi::engine::apply::{apply_fenced, Outcome};
use komisi::engine::faults::Faults;
use komisi::engine::EngineError;
use komisi::journal::keys::partition_of;
use komisi::store::{Backend, Fence, Parts};
use std::sync::Arc;
use std::time::{Duration, Instant};

const P: u16 = 4;

const FENCING_IS_MYSQLS: &str = "fencing tokens live in MySQL; the embedded mode is one instance and fences nothing";

async fn setup() -> (TestApp, Box<dyn Backend>, EventId, u16) {
    // The instance's journal is unreachable: it owns no partition and
    // applies nothing, so the test plays the instances.
    let app = spawn_app_without_journal().await;
    abc_tree(&app).await;
    app.accept(&worked_example_order("o-1", "x", "code-C")).await;
    let store = open_store(&app.config, 4).await;
    let id = EventId::parse(&app.db.one("SELECT id FROM events WHERE order_id = 'o-1'", &[]).await).unwrap();
    let key = app.db.one("SELECT partition_key FROM events WHERE order_id = 'o-1'", &[]).await;
    (app, store, id, partition_of(&key, P))
}

fn by(name: &str) -> Arc<str> {
    Arc::from(name)
}

#[tokio::test]
async fn a_stale_token_commits_nothing_and_the_current_one_applies_the_event() {
    if !needs_mysql_backend("a_stale_token_commits_nothing_and_the_current_one_applies_the_event", FENCING_IS_MYSQLS) {
        return;
    }
    let (app, store, id, part) = setup().await;
    let (old, prev) = store.take_fence(part, "old").await.unwrap();
    assert_eq!((old, prev), (1, None), "the first token of a partition");
    let (new, prev) = store.take_fence(part, "new").await.unwrap();
    assert_eq!((new, prev.as_deref()), (2, Some("old")), "a takeover moves the token on");

    let stale =
        apply_fenced(store.as_ref(), &Faults::default(), &[(id, Some(Fence { part, token: old }))], Some(&by("old")))
            .await;
    assert!(matches!(stale, Err(EngineError::Fenced)), "{stale:?}");
    assert_eq!(app.db.one("SELECT status FROM events WHERE id = ?", &[&id.to_string()]).await, "pending");
    assert_eq!(app.db.int("SELECT COUNT(*) FROM ledger_entries", &[]).await, 0, "the stale owner wrote nothing");
    // A token of another partition does not stand in either.
    let other = Fence { part: (part + 1) % P, token: new };
    assert!(matches!(
        apply_fenced(store.as_ref(), &Faults::default(), &[(id, Some(other))], Some(&by("new"))).await,
        Err(EngineError::Fenced)
    ));

    let done =
        apply_fenced(store.as_ref(), &Faults::default(), &[(id, Some(Fence { part, token: new }))], Some(&by("new")))
            .await
            .unwrap();
    assert!(matches!(done[..], [Outcome::Applied { .. }]), "{done:?}");
    let row = app.db.rows("SELECT applied_by, applied_fence FROM events WHERE id = ?", &[&id.to_string()]).await;
    assert_eq!(row, vec![vec![Some("new".to_owned()), Some("2".to_owned())]]);
    assert_eq!(app.balance("C", "pending").await, d("95000"));
    let log = app.db.rows("SELECT token, owner, previous_owner FROM journal_fence_log ORDER BY token", &[]).await;
    assert_eq!(
        log,
        vec![
            vec![Some("1".into()), Some("old".into()), None],
            vec![Some("2".into()), Some("new".into()), Some("old".into())]
        ]
    );
    app.assert_ledger_consistent().await;
}

#[tokio::test]
async fn a_takeover_waits_for_the_old_owners_transaction_then_fences_it_out() {
    if !needs_mysql_backend("a_takeover_waits_for_the_old_owners_transaction_then_fences_it_out", FENCING_IS_MYSQLS) {
        return;
    }
    let (app, store, _id, part) = setup().await;
    let store: Arc<dyn Backend> = Arc::from(store);
    let (token, _) = store.take_fence(part, "old").await.unwrap();
    // The old owner's transaction is past its check, holding the row shared.
    let mut tx = store.begin_apply().await.unwrap();
    assert!(tx.fence(&[Fence { part, token }]).await.unwrap());
    let taking = tokio::spawn({
        let store = store.clone();
        async move { store.take_fence(part, "new").await }
    });
    // The takeover is seen waiting for the row lock (it gives up after its
    // own 2 s lock wait, so the check comes well before that once it waits).
    // INNODB_TRX is a cache InnoDB refreshes only after 0.1 s without a
    // read: looked at every 50 ms (as `poll` does) it would never change.
    let until = Instant::now() + Duration::from_secs(10);
    let waiting = loop {
        let waits = app
            .db
            .int(
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX t \
                 JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
                 WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE() \
                 AND t.trx_query LIKE '%journal_fences%FOR UPDATE%'",
                &[],
            )
            .await;
        if waits == 1 || Instant::now() > until {
            break waits == 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(waiting, "the takeover never waited on the fence row's lock (finished: {})", taking.is_finished());
    assert!(!taking.is_finished(), "the takeover must wait for the old owner's open transaction");
    tx.commit().await.unwrap();
    let (new, prev) = taking.await.unwrap().unwrap();
    assert_eq!((new, prev.as_deref()), (token + 1, Some("old")));
    // Every transaction after the takeover sees the new token.
    let mut late = store.begin_apply().await.unwrap();
    assert!(!late.fence(&[Fence { part, token }]).await.unwrap(), "the old token is fenced out");
    assert!(late.fence(&[Fence { part, token: new }]).await.unwrap());
    // Ended here: an open transaction would hold the database's metadata
    // lock against the test's DROP DATABASE.
    late.commit().await.unwrap();
}

#[tokio::test]
async fn partitions_are_crc32_of_the_key_in_rust_and_in_sql_and_recovery_reads_only_its_own() {
    if !needs_mysql_backend(
        "partitions_are_crc32_of_the_key_in_rust_and_in_sql_and_recovery_reads_only_its_own",
        FENCING_IS_MYSQLS,
    ) {
        return;
    }
    let app = spawn_app_without_journal().await;
    abc_tree(&app).await;
    for n in 0..12 {
        app.accept(&simple_order(&format!("o-{n}"), &format!("b-{n}"), None, "100000")).await;
    }
    let store = open_store(&app.config, 2).await;
    let keys = app.db.rows("SELECT id, partition_key, CRC32(partition_key) % 4 FROM events", &[]).await;
    assert_eq!(keys.len(), 12);
    let mut by_part: Vec<Vec<String>> = vec![Vec::new(); usize::from(P)];
    for row in &keys {
        let key = row[1].as_deref().unwrap();
        let p = partition_of(key, P);
        assert_eq!(row[2].as_deref(), Some(p.to_string().as_str()), "MySQL's CRC32 agrees for {key}");
        by_part[usize::from(p)].push(row[0].clone().unwrap());
    }
    assert!(by_part.iter().filter(|ids| !ids.is_empty()).count() > 1, "buyers spread over partitions");
    let owned = [0u16, 2];
    let page = store.open_events(None, 100, Parts { of: P, owned: &owned }).await.unwrap();
    let mut got: Vec<String> = page.iter().map(|e: &EventRef| e.id.to_string()).collect();
    let mut want: Vec<String> = owned.iter().flat_map(|p| by_part[usize::from(*p)].clone()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "open events of partitions 0 and 2 only");
    // Due events too; and every partition is no filter at all.
    app.db.exec("UPDATE events SET next_attempt_at = '2000-01-01'", &[]).await;
    let now = chrono::Utc::now();
    let lease = now + chrono::TimeDelta::seconds(60);
    let due = store.take_due_events(100, Parts { of: P, owned: &[1] }, now, lease).await.unwrap();
    assert_eq!(due.len(), by_part[1].len());
    assert!(due.iter().all(|e| partition_of(e.partition.as_str(), P) == 1));
    let all = store.open_events(None, 100, Parts { of: P, owned: &[0, 1, 2, 3] }).await.unwrap();
    assert_eq!(all.len(), 12);
}
