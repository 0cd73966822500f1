//! Reconcile as a background job: which run is due, what an incremental
//! run covers, and who may run one now. The checks themselves are the
//! rules of the ledger, the entitlement and the wallet; here only their
//! scheduling.
use chrono::{DateTime, TimeDelta, Utc};

/// What a run is checking now, in this order. A full sweep's `done` and
/// `total` count its orders: past `orders` they stay at `total`, and the
/// phases after it have no estimate. An incremental run reads its totals
/// first, then checks its orders and its wallets.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Each processed order's ledger against its entitlement, page by page.
    #[default]
    Orders,
    /// Each buyer's wallet (lots, holds, spending), page by page.
    Wallets,
    /// Each counted month of the month counters against its orders.
    Months,
    /// Each cap and budget counter against the lines it covers.
    Counters,
    /// The stored totals: balances, points, batches, event tallies.
    Totals,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// What changed since the runs before: the orders, affiliates and
    /// buyers of the ledger and reward entries written since, the payouts
    /// and wallet events since, and every open event past the horizon.
    Incremental,
    /// Every order, affiliate, buyer, payout and event.
    Full,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Incremental => "incremental",
            Self::Full => "full",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "incremental" => Some(Self::Incremental),
            "full" => Some(Self::Full),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Done,
    /// It stopped before its end (an error, or its instance stopped: no
    /// heartbeat); a full sweep that failed is resumed by the next one.
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Self::Running),
            "done" => Some(Self::Done),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// The ledger and reward entries a run covers: ids above `from`, up to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    pub ledger: (u64, u64),
    pub rewards: (u64, u64),
    /// Changes without entries (payouts, wallet events) since this time.
    pub since: Option<DateTime<Utc>>,
}

impl Window {
    /// Every entry up to these ids, and every change since the beginning: a full sweep's.
    pub fn everything(ledger_max: u64, rewards_max: u64) -> Self {
        Self { ledger: (0, ledger_max), rewards: (0, rewards_max), since: None }
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: u64,
    pub kind: RunKind,
    pub status: RunStatus,
    pub owner: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub window: Window,
    /// A full sweep's place: the last order id it checked.
    pub cursor: Option<String>,
    pub done: u64,
    pub total: u64,
    pub violations: u64,
    /// The report so far, as JSON.
    pub report: String,
    pub error: Option<String>,
}

/// A run's schedule: an incremental run every `every`, a full sweep every
/// `full_every` (zero: never by itself).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub every: TimeDelta,
    pub full_every: TimeDelta,
}

/// The scheduling rule: nothing while a run is running; a full sweep first
/// when none ever finished (an incremental run needs a covered past to
/// start from) or when the last one is `full_every` old; else an
/// incremental run when the last run of either kind is `every` old.
pub fn due(
    now: DateTime<Utc>,
    running: bool,
    last_full: Option<DateTime<Utc>>,
    last_any: Option<DateTime<Utc>>,
    s: Schedule,
) -> Option<RunKind> {
    if running || s.every <= TimeDelta::zero() {
        return None;
    }
    let full_due = s.full_every > TimeDelta::zero() && last_full.is_none_or(|at| now - at >= s.full_every);
    if last_full.is_none() || full_due {
        return Some(RunKind::Full);
    }
    if last_any.is_none_or(|at| now - at >= s.every) {
        return Some(RunKind::Incremental);
    }
    None
}

/// What an incremental run covers, given the finished runs (newest first)
/// and the highest entry ids now: the entries above the highest ids the
/// *second* newest run saw, so each run covers the newest run's window once
/// more — an entry numbered but not yet committed when that run read (a
/// transaction in flight) is covered by the next one. Payouts and wallet
/// events since the second newest run's start, likewise.
pub fn incremental_window(finished: &[Run], ledger_max: u64, rewards_max: u64) -> Window {
    let base = finished.get(1).or(finished.first());
    match base {
        None => Window::everything(ledger_max, rewards_max),
        Some(r) => Window {
            ledger: (r.window.ledger.1.min(ledger_max), ledger_max),
            rewards: (r.window.rewards.1.min(rewards_max), rewards_max),
            since: Some(r.started_at),
        },
    }
}

/// What a run asked for as incremental covers: the incremental window
/// while it spans at most `max_entries` entry ids (ledger and reward
/// entries together; ids are handed out in order, so the distance bounds
/// the count), else a full sweep. An incremental run holds its window's
/// touched orders, affiliates and buyers in memory at once, while a sweep
/// pages through everything in bounded memory and can resume: the first
/// run on a database with years of history and no run before, or the first
/// after a long pause of the schedule, is a sweep.
pub fn incremental_or_full(finished: &[Run], ledger_max: u64, rewards_max: u64, max_entries: u64) -> (RunKind, Window) {
    let w = incremental_window(finished, ledger_max, rewards_max);
    let spans = (w.ledger.1 - w.ledger.0).saturating_add(w.rewards.1 - w.rewards.0);
    match spans <= max_entries {
        true => (RunKind::Incremental, w),
        false => (RunKind::Full, Window::everything(ledger_max, rewards_max)),
    }
}

/// Who may run now, decided under the `reconcile` lock from the runs that
/// say they are running: one whose heartbeat is older than `stale_before`
/// has stopped (its instance died) and is failed; a live one keeps the
/// lock. A full sweep that stopped is resumed from its place by the next
/// full sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// Runs to mark failed (they stopped).
    pub stopped: Vec<u64>,
    /// A live run: nothing may start.
    pub busy: Option<u64>,
    /// The stopped full sweep a new full sweep continues.
    pub resume: Option<u64>,
}

pub fn claim(running: &[Run], kind: RunKind, stale_before: DateTime<Utc>) -> Claim {
    let (stopped, live): (Vec<&Run>, Vec<&Run>) = running.iter().partition(|r| r.heartbeat_at < stale_before);
    let resume = match kind {
        RunKind::Full => stopped.iter().filter(|r| r.kind == RunKind::Full).map(|r| r.id).max(),
        RunKind::Incremental => None,
    };
    Claim { stopped: stopped.iter().map(|r| r.id).collect(), busy: live.first().map(|r| r.id), resume }
}

/// Seconds left of a run at its pace so far (None before any progress).
pub fn eta(started_at: DateTime<Utc>, now: DateTime<Utc>, done: u64, total: u64) -> Option<f64> {
    if done == 0 || total <= done {
        return (total > 0 && total <= done).then_some(0.0);
    }
    let spent = (now - started_at).num_milliseconds().max(0) as f64 / 1000.0;
    Some(spent / done as f64 * (total - done) as f64)
}

/// The ledger id up to which a full sweep may record the affiliates'
/// checked totals: every entry up to it must have committed. The newest
/// finished run's highest id (`before`) has; so has the sweep's own (`own`,
/// the highest id when it started) once it has run for `settle` — longer
/// than any transaction stays open — which a first sweep over a large
/// history does.
pub fn check_mark(before: u64, own: u64, started_at: DateTime<Utc>, now: DateTime<Utc>, settle: TimeDelta) -> u64 {
    if now - started_at >= settle {
        before.max(own)
    } else {
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
    }

    fn run(id: u64, kind: RunKind, started: i64, heartbeat: i64, to: u64) -> Run {
        Run {
            id,
            kind,
            status: RunStatus::Running,
            owner: "i".into(),
            started_at: t(started),
            heartbeat_at: t(heartbeat),
            finished_at: None,
            window: Window { ledger: (0, to), rewards: (0, to / 2), since: None },
            cursor: None,
            done: 0,
            total: 0,
            violations: 0,
            report: "{}".into(),
            error: None,
        }
    }

    const S: Schedule = Schedule { every: TimeDelta::seconds(60), full_every: TimeDelta::seconds(86_400) };

    #[test]
    fn a_full_sweep_first_then_incremental_runs_and_a_daily_full_sweep() {
        assert_eq!(due(t(0), false, None, None, S), Some(RunKind::Full));
        assert_eq!(due(t(0), true, None, None, S), None, "one run at a time");
        assert_eq!(due(t(30), false, Some(t(0)), Some(t(0)), S), None);
        assert_eq!(due(t(60), false, Some(t(0)), Some(t(0)), S), Some(RunKind::Incremental));
        assert_eq!(due(t(100), false, Some(t(0)), Some(t(60)), S), None);
        assert_eq!(due(t(86_400), false, Some(t(0)), Some(t(86_390)), S), Some(RunKind::Full));
        let off = Schedule { every: TimeDelta::zero(), ..S };
        assert_eq!(due(t(0), false, None, None, off), None, "scheduling off: on demand only");
        let no_full = Schedule { full_every: TimeDelta::zero(), ..S };
        assert_eq!(due(t(999_999), false, Some(t(0)), Some(t(0)), no_full), Some(RunKind::Incremental));
    }

    #[test]
    fn each_window_covers_the_newest_runs_entries_once_more() {
        assert_eq!(
            incremental_window(&[], 50, 20),
            Window { ledger: (0, 50), rewards: (0, 20), since: None },
            "nothing covered yet: everything"
        );
        let one = [run(1, RunKind::Full, 0, 5, 40)];
        assert_eq!(incremental_window(&one, 50, 30).ledger, (40, 50));
        let two = [run(3, RunKind::Incremental, 100, 101, 90), run(2, RunKind::Incremental, 50, 51, 70)];
        let w = incremental_window(&two, 120, 60);
        assert_eq!((w.ledger, w.rewards, w.since), ((70, 120), (35, 60), Some(t(50))));
        // Ids never go back (a restored database): the window is empty, not negative.
        assert_eq!(incremental_window(&two, 10, 10).ledger, (10, 10));
    }

    #[test]
    fn an_incremental_window_wider_than_the_limit_is_a_full_sweep() {
        let full = |l, r| (RunKind::Full, Window { ledger: (0, l), rewards: (0, r), since: None });
        // Nothing covered yet: everything, incremental only while small.
        assert_eq!(incremental_or_full(&[], 50, 20, 70), (RunKind::Incremental, incremental_window(&[], 50, 20)));
        assert_eq!(incremental_or_full(&[], 50, 21, 70), full(50, 21), "71 entries past a limit of 70");
        // Ledger and reward entries count together, from the base run's marks.
        let two = [run(3, RunKind::Incremental, 100, 101, 90), run(2, RunKind::Incremental, 50, 51, 70)];
        assert_eq!(incremental_or_full(&two, 120, 60, 75).0, RunKind::Incremental, "50 + 25 entries");
        assert_eq!(incremental_or_full(&two, 120, 60, 74), full(120, 60));
        // Ids that went back (a restored database) span nothing.
        assert_eq!(incremental_or_full(&two, 10, 10, 0).0, RunKind::Incremental);
    }

    #[test]
    fn a_stopped_run_is_failed_a_live_one_keeps_the_lock_and_a_stopped_full_sweep_is_resumed() {
        let running = [run(7, RunKind::Full, 0, 10, 100), run(9, RunKind::Incremental, 20, 95, 120)];
        let c = claim(&running, RunKind::Full, t(60));
        assert_eq!(c, Claim { stopped: vec![7], busy: Some(9), resume: Some(7) });
        let c = claim(&running, RunKind::Incremental, t(100));
        assert_eq!(c, Claim { stopped: vec![7, 9], busy: None, resume: None });
        assert_eq!(claim(&[], RunKind::Full, t(0)), Claim { stopped: vec![], busy: None, resume: None });
    }

    #[test]
    fn the_eta_is_the_pace_so_far() {
        assert_eq!(eta(t(0), t(10), 0, 100), None);
        assert_eq!(eta(t(0), t(10), 25, 100), Some(30.0));
        assert_eq!(eta(t(0), t(10), 100, 100), Some(0.0));
    }

    #[test]
    fn a_sweep_records_checks_up_to_its_own_start_only_once_it_has_settled() {
        let t0 = Utc::now();
        let settle = TimeDelta::seconds(60);
        assert_eq!(check_mark(0, 500, t0, t0 + TimeDelta::seconds(5), settle), 0, "a quick first sweep: none");
        assert_eq!(check_mark(0, 500, t0, t0 + TimeDelta::seconds(60), settle), 500);
        assert_eq!(check_mark(300, 500, t0, t0 + TimeDelta::seconds(5), settle), 300, "the run before it's");
        assert_eq!(check_mark(300, 500, t0, t0 + TimeDelta::minutes(9), settle), 500);
    }
}
