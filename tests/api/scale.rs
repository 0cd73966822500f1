//! Scale-out: several real komisi processes (the built binary) on loopback
//! ports, sharing one MariaDB database and one Redis key prefix (or a Redis
//! Cluster), driven as a load balancer would drive them — an order whose
//! instance is down is sent to the next one. Each test kills, pauses or
//! restarts instances under load and then checks the money: every order
//! answered 2xx paid exactly once, and every applied event committed under
//! the fencing token its instance held (`journal_fence_log`). MySQL only: the
//! embedded mode is one process.
use crate::helpers::*;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITIONS: u16 = 16;
const LEASE_TTL_MS: u64 = 3_000;
const LEAVES: usize = 12;

const ONE_PROCESS_EMBEDDED: &str = "several instances need MySQL and Redis; the embedded mode is one process";

/// One komisi process.
struct Proc {
    id: String,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    env: Vec<(String, String)>,
}

impl Proc {
    /// Starts the process; returns where its output begins in the log
    /// (the log is appended to across restarts).
    fn spawn(&mut self) -> usize {
        let from = std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_komisi"));
        cmd.args(["serve", "--bind", &format!("127.0.0.1:{}", self.port)])
            .env("KOMISI_INSTANCE_ID", &self.id)
            // "komisi serving" (its own port bound) and lease moves at info.
            .env("RUST_LOG", "warn,komisi::app=info,komisi::actors::leases=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start komisi"));
        from
    }

    /// The log from byte `from` on.
    fn log_since(&self, from: usize) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(text.get(from..).unwrap_or_default()).into_owned()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill").args([sig, &pid.to_string()]).status().expect("kill").success();
        assert!(ok, "kill {sig} {pid}");
    }

    fn sigkill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the process to exit; its exit status.
    fn sigterm_and_wait(&mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        let mut c = self.child.take().expect("running");
        c.wait().expect("wait")
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// N instances on one database and prefix, and an HTTP client playing the
/// load balancer.
struct Fleet {
    procs: Vec<Proc>,
    up: Vec<Arc<AtomicBool>>,
    client: reqwest::Client,
    db: TestDb,
    db_name: String,
    prefix: String,
    redis_nodes: Vec<String>,
    dir: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Fleet {
    /// `n` instances on `redis_url` (one URL, or a comma-separated cluster),
    /// extra settings `env` on every instance.
    async fn start(n: usize, redis_url: &str, env: &[(&str, &str)]) -> Fleet {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let prefix = format!("komisi_t_{}", &id[id.len() - 20..]);
        let (db, db_url) = create_mysql_database(&prefix).await;
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut common: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), db_url),
            ("REDIS_URL".into(), redis_url.into()),
            ("KOMISI_REDIS_PREFIX".into(), prefix.clone()),
            ("KOMISI_STOREFRONT_KEYS".into(), STOREFRONT_KEY.into()),
            ("KOMISI_ADMIN_KEYS".into(), ADMIN_KEY.into()),
            ("KOMISI_JOURNAL_PARTITIONS".into(), PARTITIONS.to_string()),
            ("KOMISI_LEASE_TTL_MS".into(), LEASE_TTL_MS.to_string()),
            ("KOMISI_DB_MAX_CONNECTIONS".into(), "4".into()),
            ("KOMISI_DB_WORKER_CONNECTIONS".into(), "4".into()),
            ("KOMISI_RECOVERY_INTERVAL_MS".into(), "500".into()),
            ("KOMISI_REDELIVER_AFTER_MS".into(), "5000".into()),
            ("KOMISI_CLAIM_IDLE_MS".into(), "5000".into()),
            ("KOMISI_RETRY_BASE_MS".into(), "100".into()),
            ("KOMISI_RETRY_MAX_MS".into(), "1000".into()),
        ];
        common.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let procs: Vec<Proc> = (0..n)
            .map(|i| Proc {
                id: format!("s{}", i + 1),
                // Chosen when it first starts (see `start_one`).
                port: 0,
                child: None,
                log: dir.join(format!("s{}.log", i + 1)),
                env: common.clone(),
            })
            .collect();
        let mut fleet = Fleet {
            up: procs.iter().map(|_| Arc::new(AtomicBool::new(false))).collect(),
            procs,
            client: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
            db,
            db_name: prefix.clone(),
            prefix,
            redis_nodes: redis_url.split(',').map(str::to_owned).collect(),
            dir,
        };
        // The first one migrates the fresh database; the others start on it.
        for i in 0..n {
            fleet.start_one(i).await;
        }
        fleet
    }

    /// Starts instance `i` and waits until it answers ready. The first
    /// start takes a free port just before the process binds it; if another
    /// process took that port meanwhile, it tries another one. A restart
    /// binds the port the load balancer already sends to.
    async fn start_one(&mut self, i: usize) {
        let first = self.procs[i].port == 0;
        let mut tries = 0;
        'spawn: loop {
            tries += 1;
            if first {
                self.procs[i].port = free_port();
            }
            let from = self.procs[i].spawn();
            let url = format!("http://127.0.0.1:{}/readyz", self.procs[i].port);
            let started = Instant::now();
            loop {
                // Ready, and from this process: another server on the port
                // (the port reused before this one bound it) is not it.
                if let Ok(r) = self.client.get(&url).send().await {
                    if r.status() == StatusCode::OK && self.procs[i].log_since(from).contains("komisi serving") {
                        break 'spawn;
                    }
                }
                if let Some(Ok(Some(status))) = self.procs[i].child.as_mut().map(|c| c.try_wait()) {
                    self.procs[i].child = None;
                    if first && tries < 5 && self.procs[i].log_since(from).contains("cannot listen") {
                        continue 'spawn;
                    }
                    panic!("{} exited ({status}):\n{}", self.procs[i].id, self.procs[i].tail());
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{} not ready:\n{}",
                    self.procs[i].id,
                    self.procs[i].tail()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.up[i].store(true, Ordering::SeqCst);
    }

    fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.procs[i].port)
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .client
            .request(method, format!("{}{path}", self.base(0)))
            .bearer_auth(ADMIN_KEY)
            .json(body)
            .send()
            .await
            .expect("admin request");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A → B → C0…C11, no monthly tiers or milestones: a 100 000 order
    /// through a leaf's code pays the leaf 10 000, B 3 000 and A 1 000. The
    /// twelve leaves spread the orders over the partitions.
    async fn setup_tree(&self) {
        let mut program = default_program();
        program["tiers"] = json!([]);
        program["milestones"] = json!([]);
        let (status, body) = self.admin(reqwest::Method::PUT, "/admin/program", &program).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let leaves: Vec<String> = (0..LEAVES).map(|i| format!("C{i}")).collect();
        let tree = [("A", None), ("B", Some("A"))].into_iter().chain(leaves.iter().map(|l| (l.as_str(), Some("B"))));
        for (id, parent) in tree {
            let r = self
                .client
                .post(format!("{}/v1/affiliates", self.base(0)))
                .bearer_auth(STOREFRONT_KEY)
                .json(&json!({"id": id, "name": id, "parent_id": parent, "referral_code": format!("code-{id}")}))
                .send()
                .await
                .expect("create affiliate");
            assert_eq!(r.status(), StatusCode::CREATED);
        }
    }

    async fn metric(&self, i: usize, name: &str) -> f64 {
        let Ok(r) = self.client.get(format!("{}/metrics", self.base(i))).send().await else { return 0.0 };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Partitions each instance owns, per `journal_fences`.
    async fn owners(&self) -> std::collections::BTreeMap<String, Vec<u16>> {
        let mut out = std::collections::BTreeMap::<String, Vec<u16>>::new();
        for r in self.db.rows("SELECT part, owner FROM journal_fences ORDER BY part", &[]).await {
            out.entry(r[1].clone().unwrap()).or_default().push(r[0].as_deref().unwrap().parse().unwrap());
        }
        out
    }

    /// Waits until the live instances own all partitions, each its share.
    async fn balanced(&self, live: &[usize]) {
        let share = usize::from(PARTITIONS).div_ceil(live.len());
        let ok = poll(Duration::from_secs(60), || async {
            let mut owned = 0;
            for &i in live {
                let n = self.metric(i, "komisi_partitions_owned").await as usize;
                if n == 0 || n > share {
                    return false;
                }
                owned += n;
            }
            owned == usize::from(PARTITIONS)
        })
        .await;
        if !ok {
            let mut seen = Vec::new();
            for &i in live {
                seen.push(format!("{}: {} owned", self.procs[i].id, self.metric(i, "komisi_partitions_owned").await));
            }
            let logs: Vec<String> =
                live.iter().map(|&i| format!("{}:\n{}", self.procs[i].id, self.procs[i].tail())).collect();
            panic!(
                "partitions spread over {live:?}: fences {:?}, gauges {seen:?}\n{}",
                self.owners().await,
                logs.join("\n")
            );
        }
    }

    /// Open events (not yet applied or given up).
    async fn open_events(&self) -> i64 {
        self.db.int("SELECT COUNT(*) FROM events WHERE status <> 'done'", &[]).await
    }

    async fn drained(&self) {
        let ok = poll(Duration::from_secs(120), || async { self.open_events().await == 0 }).await;
        let logs: Vec<String> = self.procs.iter().map(|p| format!("{}:\n{}", p.id, p.tail())).collect();
        assert!(ok, "{} events still open\n{}", self.open_events().await, logs.join("\n"));
    }

    /// The money and the fences after a run of `orders` accepted orders.
    async fn assert_paid_once_under_fences(&self, orders: usize) {
        let n = orders as i64;
        assert_eq!(self.db.int("SELECT COUNT(*) FROM orders", &[]).await, n, "every accepted order stored once");
        let per_order = self
            .db
            .rows("SELECT order_id, COUNT(*) FROM ledger_entries GROUP BY order_id HAVING COUNT(*) <> 3", &[])
            .await;
        assert!(per_order.is_empty(), "every order has its 3 levels once: {per_order:?}");
        assert_eq!(self.db.int("SELECT COUNT(DISTINCT order_id) FROM ledger_entries", &[]).await, n);
        for (aff, each) in [("C%", 10_000), ("B", 3_000), ("A", 1_000)] {
            let pending: rust_decimal::Decimal = self
                .db
                .column("SELECT pending FROM affiliates WHERE id LIKE ?", &[aff])
                .await
                .iter()
                .map(|v| d(v))
                .sum();
            assert_eq!(pending, d(&(each * n).to_string()), "{aff}'s pending balance");
        }
        // Every applied event committed under a token its instance held.
        let unfenced = self
            .db
            .rows(
                &format!(
                    "SELECT e.id, e.applied_by, e.applied_fence FROM events e WHERE e.status = 'done' AND NOT EXISTS \
                     (SELECT 1 FROM journal_fence_log l WHERE l.part = CRC32(e.partition_key) % {PARTITIONS} \
                      AND l.token = e.applied_fence AND l.owner = e.applied_by)"
                ),
                &[],
            )
            .await;
        assert!(unfenced.is_empty(), "events applied outside their instance's ownership: {unfenced:?}");
        let report = self.client.post(format!("{}/admin/reconcile", self.base(self.live()[0]))).bearer_auth(ADMIN_KEY);
        let report: Value =
            report.json(&json!({"wait": true})).send().await.expect("reconcile").json().await.expect("json");
        assert_eq!(report["ok"], true, "reconcile: {report}");
    }

    fn live(&self) -> Vec<usize> {
        (0..self.procs.len()).filter(|&i| self.up[i].load(Ordering::SeqCst)).collect()
    }

    /// Posts `n` orders at about `per_sec`, round-robin over the instances that
    /// are up, as a load balancer would: a refused connection goes to the next
    /// instance with the same order (its id makes the retry idempotent). The
    /// statuses answered, one per order.
    fn load(&self, tag: &str, n: usize, per_sec: u64) -> tokio::task::JoinHandle<Vec<StatusCode>> {
        let bases: Vec<String> = (0..self.procs.len()).map(|i| self.base(i)).collect();
        let up = self.up.clone();
        let client = self.client.clone();
        let tag = tag.to_owned();
        let next = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            let started = Instant::now();
            futures::stream::iter(0..n)
                .map(|i| {
                    let (bases, up, client, next, tag) =
                        (bases.clone(), up.clone(), client.clone(), next.clone(), tag.clone());
                    async move {
                        let due = started + Duration::from_micros(i as u64 * 1_000_000 / per_sec);
                        tokio::time::sleep_until(due.into()).await;
                        let order = simple_order(
                            &format!("{tag}-{i:05}"),
                            &format!("{tag}-b{i}"),
                            Some(&format!("code-C{}", i % LEAVES)),
                            "100000",
                        );
                        for _attempt in 0..50 {
                            let k = next.fetch_add(1, Ordering::Relaxed) % bases.len();
                            if !up[k].load(Ordering::SeqCst) {
                                continue;
                            }
                            match client
                                .post(format!("{}/v1/orders", bases[k]))
                                .bearer_auth(STOREFRONT_KEY)
                                .json(&order)
                                .send()
                                .await
                            {
                                // Connection refused or reset: that instance is gone.
                                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                                Ok(r) => return r.status(),
                            }
                        }
                        panic!("order {tag}-{i}: no instance answered");
                    }
                })
                .buffer_unordered(32)
                .collect()
                .await
        })
    }

    /// Waits for a load run; panics on anything but 2xx.
    async fn answered(load: tokio::task::JoinHandle<Vec<StatusCode>>) -> usize {
        let statuses = load.await.expect("load task");
        let bad: Vec<&StatusCode> = statuses.iter().filter(|s| !s.is_success()).collect();
        assert!(
            bad.is_empty(),
            "{} of {} orders not answered 2xx: {:?}",
            bad.len(),
            statuses.len(),
            &bad[..bad.len().min(10)]
        );
        statuses.len()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(c) = p.child.as_ref() {
                // A paused process is resumed so SIGKILL is not held up.
                let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
            }
            p.sigkill();
        }
        if std::thread::panicking() {
            eprintln!("scale test: database {} and logs in {} kept", self.db_name, self.dir.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        drop_mysql_database(&self.db_name);
        for node in &self.redis_nodes {
            delete_keys_on_node(node, &self.prefix);
        }
    }
}

/// Deletes the prefix's keys held by one Redis node (a cluster node holds
/// only its own slots' keys; each key is deleted on its own).
fn delete_keys_on_node(url: &str, prefix: &str) {
    let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else { return };
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("*{prefix}*")).query(&mut conn).unwrap_or_default();
    for key in keys {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query(&mut conn);
    }
}

/// Orders through all three instances, s2 SIGKILLed two seconds in; checks
/// the takeover of its partitions. The count of orders answered.
async fn kill_one_under_load(fleet: &mut Fleet, orders: usize) -> usize {
    fleet.setup_tree().await;
    fleet.balanced(&[0, 1, 2]).await;
    let load = fleet.load("k", orders, 150);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // s2's partitions, then SIGKILL: nothing drained, nothing released.
    let victim = 1;
    let theirs = fleet.db.rows("SELECT part, token FROM journal_fences WHERE owner = 's2'", &[]).await;
    assert!(!theirs.is_empty(), "s2 owned partitions before the kill");
    fleet.up[victim].store(false, Ordering::SeqCst);
    fleet.procs[victim].sigkill();
    let killed_at = chrono::Utc::now();
    let answered = Fleet::answered(load).await;
    // The survivors take s2's partitions: within the TTL plus one renewal
    // interval (the last renewal was before the kill), plus the time the
    // takeover itself takes.
    let moved = poll(Duration::from_secs(30), || async {
        let owners = fleet.owners().await;
        owners.get(&fleet.procs[victim].id).is_none_or(Vec::is_empty)
    })
    .await;
    assert!(moved, "s2's partitions taken over: {:?}", fleet.owners().await);
    // The next token of each of s2's partitions: another owner's, taken from s2.
    let mut taken = Vec::new();
    for r in &theirs {
        let (part, token) = (r[0].clone().unwrap(), r[1].clone().unwrap());
        let next = fleet
            .db
            .rows(
                "SELECT owner, previous_owner, taken_at FROM journal_fence_log WHERE part = ? AND token = ? + 1",
                &[&part, &token],
            )
            .await;
        assert_eq!(next.len(), 1, "partition {part} taken over after token {token}");
        assert_eq!(next[0][1].as_deref(), Some("s2"), "partition {part} taken from s2: {next:?}");
        assert_ne!(next[0][0].as_deref(), Some("s2"));
        taken.push(next[0].clone());
    }
    let latest = taken.iter().map(|r| r[2].clone().unwrap()).max().unwrap();
    let latest = chrono::DateTime::parse_from_rfc3339(&latest).unwrap().with_timezone(&chrono::Utc);
    let took = (latest - killed_at).to_std().unwrap_or_default();
    let bound = Duration::from_millis(LEASE_TTL_MS + LEASE_TTL_MS / 3 + 1_500);
    eprintln!("s2's {} partitions taken over {took:?} after the kill (bound {bound:?})", theirs.len());
    assert!(took <= bound, "takeover took {took:?}, more than the TTL plus one renewal ({bound:?}): {taken:?}");
    fleet.drained().await;
    fleet.balanced(&[0, 2]).await;
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_killed_every_order_paid_once_and_its_partitions_taken_over() {
    if !needs_mysql_backend(
        "three_instances_one_killed_every_order_paid_once_and_its_partitions_taken_over",
        ONE_PROCESS_EMBEDDED,
    ) {
        return;
    }
    let mut fleet = Fleet::start(3, &redis_url(), &[]).await;
    let answered = kill_one_under_load(&mut fleet, 900).await;
    fleet.assert_paid_once_under_fences(answered).await;
    // Each instance applied some of the events (the load was spread).
    let by = fleet.db.column("SELECT DISTINCT applied_by FROM events ORDER BY applied_by", &[]).await;
    assert_eq!(by, ["s1", "s2", "s3"], "events applied by each instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_three_instances_one_killed_every_order_paid_once() {
    let test = "on_a_redis_cluster_three_instances_one_killed_every_order_paid_once";
    if !needs_mysql_backend(test, ONE_PROCESS_EMBEDDED) {
        return;
    }
    let Some(cluster) = cluster_url(test) else { return };
    let mut fleet = Fleet::start(3, &cluster, &[]).await;
    let answered = kill_one_under_load(&mut fleet, 600).await;
    fleet.assert_paid_once_under_fences(answered).await;
    // The journal really lived on the cluster: partitions' streams on every node.
    let mut nodes_with_streams = 0;
    for node in &fleet.redis_nodes {
        let mut conn = redis::Client::open(node.as_str()).unwrap().get_connection().unwrap();
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{{{}:p*}}:journal", fleet.prefix)).query(&mut conn).unwrap();
        nodes_with_streams += usize::from(!keys.is_empty());
    }
    assert_eq!(nodes_with_streams, fleet.redis_nodes.len(), "the 16 streams spread over the cluster's masters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_paused_past_its_lease_commits_nothing_for_the_partitions_that_moved() {
    if !needs_mysql_backend(
        "an_instance_paused_past_its_lease_commits_nothing_for_the_partitions_that_moved",
        ONE_PROCESS_EMBEDDED,
    ) {
        return;
    }
    // Slow commissions keep events in flight on both instances.
    let fleet = Fleet::start(2, &redis_url(), &[("KOMISI_BENCH_COMMISSION_DELAY_MS", "50")]).await;
    fleet.setup_tree().await;
    fleet.balanced(&[0, 1]).await;
    let load = fleet.load("p", 400, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Pause s1 with work in flight; the load balancer stops sending to it.
    let tokens = fleet.db.rows("SELECT part, token FROM journal_fences WHERE owner = 's1'", &[]).await;
    // Read before the pause: a stopped process answers no scrape.
    let fenced_before = fleet.metric(0, "komisi_events_fenced_total").await;
    fleet.up[0].store(false, Ordering::SeqCst);
    fleet.procs[0].signal("-STOP");
    let paused = Instant::now();
    let theirs = fleet.owners().await.remove("s1").unwrap_or_default();
    // s2 takes every partition (its leases expired; its open transactions
    // are ended by MariaDB's idle_transaction_timeout).
    let moved =
        poll(Duration::from_secs(40), || async { fleet.owners().await.get("s1").is_none_or(Vec::is_empty) }).await;
    assert!(moved, "s1's partitions moved while it was paused: {:?}", fleet.owners().await);
    // A lease lives a TTL from its last renewal, which can be up to one
    // renewal interval (TTL/3) before the pause: the partitions may move
    // from TTL − TTL/3 after it, never sooner.
    assert!(
        paused.elapsed() > Duration::from_millis(LEASE_TTL_MS - LEASE_TTL_MS / 3),
        "not before its lease could have expired: {:?}",
        paused.elapsed()
    );
    let answered = Fleet::answered(load).await;
    // What s1 had committed before it was resumed.
    let before: std::collections::BTreeSet<String> =
        fleet.db.column("SELECT id FROM events WHERE applied_by = 's1'", &[]).await.into_iter().collect();
    fleet.procs[0].signal("-CONT");
    // s1 wakes with events in flight under tokens that have moved on: it
    // commits none of them.
    let ok =
        poll(Duration::from_secs(30), || async { fleet.metric(0, "komisi_events_fenced_total").await > fenced_before })
            .await;
    assert!(ok, "s1 tried its in-flight events after the pause and was fenced out:\n{}", fleet.procs[0].tail());
    fleet.up[0].store(true, Ordering::SeqCst);
    fleet.drained().await;
    // Nothing committed under s1's tokens of before the pause since.
    assert!(!tokens.is_empty() && !theirs.is_empty(), "s1 owned partitions before the pause");
    for r in &tokens {
        let (part, token) = (r[0].clone().unwrap(), r[1].clone().unwrap());
        let late: Vec<String> = fleet
            .db
            .column(
                &format!(
                    "SELECT id FROM events WHERE applied_by = 's1' AND applied_fence = ? \
                     AND CRC32(partition_key) % {PARTITIONS} = ?"
                ),
                &[&token, &part],
            )
            .await
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect();
        assert!(
            late.is_empty(),
            "s1 committed under its old token {token} of partition {part} after the pause: {late:?}"
        );
    }
    fleet.assert_paid_once_under_fences(answered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_answers_no_5xx_and_loses_nothing() {
    if !needs_mysql_backend("a_rolling_restart_under_load_answers_no_5xx_and_loses_nothing", ONE_PROCESS_EMBEDDED) {
        return;
    }
    let mut fleet = Fleet::start(3, &redis_url(), &[]).await;
    fleet.setup_tree().await;
    fleet.balanced(&[0, 1, 2]).await;
    let load = fleet.load("r", 2_500, 100);
    let handovers = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The load balancer takes it out of rotation, then it is stopped.
        fleet.up[i].store(false, Ordering::SeqCst);
        let status = fleet.procs[i].sigterm_and_wait();
        assert!(status.success(), "{} stopped cleanly: {status}\n{}", fleet.procs[i].id, fleet.procs[i].tail());
        // Handed over at once: the others own every partition well before a TTL.
        let stopped = Instant::now();
        let others: Vec<usize> = (0..3).filter(|&k| k != i).collect();
        fleet.balanced(&others).await;
        handovers.lock().unwrap().push(stopped.elapsed());
        fleet.start_one(i).await;
        fleet.balanced(&[0, 1, 2]).await;
    }
    let answered = Fleet::answered(load).await;
    eprintln!("partitions handed over after each stop within {:?}", handovers.lock().unwrap());
    fleet.drained().await;
    fleet.assert_paid_once_under_fences(answered).await;
}
