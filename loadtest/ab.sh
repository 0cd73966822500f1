#!/usr/bin/env bash
# A/B of two builds, interleaved so the machine's drift hits both alike: for
# each of RUNS rounds, a fresh server of build A, then of build B, each
# measured at RATE and RATE/2 (half) in open loop, then in closed loop with
# CLIENTS clients (saturation: each client sends its next request when the
# last is answered, so komisi's capacity sets the rate, not RATE); DIST is
# the affiliates' distribution (uniform, zipf[:S], hot; default uniform).
# The per-key rate limit is off (loadtest/serve.sh). Each line ends with the
# CPU milliseconds one applied event cost komisi, MariaDB, Redis and the load
# generator (from /proc): steadier than the rate on a noisy machine, and it
# names the process a change made busier. KOMISI_AB_SAT_ONLY=1: saturation only.
#   loadtest/ab.sh DIR_A DIR_B [rate] [runs] [dist] [clients]
# DIR_A / DIR_B are checkouts (e.g. `git worktree add /tmp/a <commit>`) with
# `cargo build --release -p komisi -p loadtest` done in each.
# KOMISI_AB_LT_A / KOMISI_AB_LT_B: extra load-generator arguments for one side
# (e.g. the same build twice, B's orders in another currency:
# KOMISI_AB_LT_B="--fx-rate 15650.25" loadtest/ab.sh . .).
# KOMISI_AB_PROGRAM_A / KOMISI_AB_PROGRAM_B: a program document (a file) PUT
# to one side's fresh server before its runs (e.g. with a budget:
# KOMISI_AB_PROGRAM_B=loadtest/programs/budget.json).
# KOMISI_AB_ENV_A / KOMISI_AB_ENV_B: server settings for one side, as
# VAR=value words (e.g. the access log, which RUST_LOG=warn leaves out:
# KOMISI_AB_ENV_B="RUST_LOG=info,sqlx=warn" loadtest/ab.sh . .).
# KOMISI_AB_SQL_A / KOMISI_AB_SQL_B: SQL run on one side's fresh database
# before its runs (e.g. without an index: KOMISI_AB_SQL_A="ALTER TABLE orders
# DROP KEY ix_orders_placed").
set -euo pipefail
A=$(cd "$1" && pwd)
B=$(cd "$2" && pwd)
RATE=${3:-726}
RUNS=${4:-3}
DIST=${5:-uniform}
CLIENTS=${6:-128}
HALF=$((RATE / 2))
# One load generator for both sides (this checkout's, built with
# `cargo build --release -p loadtest`): only the server differs.
LT=${KOMISI_AB_LOADTEST:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/loadtest}
"$(dirname "${BASH_SOURCE[0]}")/mariadb-tune.sh" "${KOMISI_BENCH_BUFFER_POOL_MB:-2048}"
summary() {
  python3 -c "import json,sys; d=json.load(sys.stdin); l=d['intake_latency']; print('$1', 'accepted/s=%.0f' % d['accepted_per_s'], 'intake p50/p99 ms=%s/%s' % (l['p50_ms'], l['p99_ms']), 'e2e events/s=%.0f' % d['end_to_end_events_per_s'], 'drain_s=%.2f' % d['drain_s'], 'lag p99<=%s' % d['lag_upper_bound_s']['p99'], 'errors=%s%s' % (d['errors'], d.get('errors_by_kind') or ''), 'cpu_ms/event=' + ' '.join('%s:%s' % kv for kv in (d.get('cpu_ms_per_event') or {}).items()))"
}
for round in $(seq "$RUNS"); do
  for side in A B; do
    dir=$A
    extra=${KOMISI_AB_LT_A:-}
    [ "$side" = B ] && dir=$B && extra=${KOMISI_AB_LT_B:-}
    envs=${KOMISI_AB_ENV_A:-}
    [ "$side" = B ] && envs=${KOMISI_AB_ENV_B:-}
    # shellcheck disable=SC2086 # one word per VAR=value
    PID=$(cd "$dir" && loadtest/serve.sh $envs)
    program=${KOMISI_AB_PROGRAM_A:-}
    [ "$side" = B ] && program=${KOMISI_AB_PROGRAM_B:-}
    if [ -n "$program" ]; then
      curl -sf -X PUT -H "Authorization: Bearer loadtest-admin" -H "Content-Type: application/json" \
        --data @"$program" http://127.0.0.1:18090/admin/program >/dev/null
    fi
    sql=${KOMISI_AB_SQL_A:-}
    [ "$side" = B ] && sql=${KOMISI_AB_SQL_B:-}
    if [ -n "$sql" ]; then
      mariadb -uroot -h127.0.0.1 "${KOMISI_BENCH_DB:-komisi_perf}" -e "$sql"
    fi
    if [ -z "${KOMISI_AB_SAT_ONLY:-}" ]; then
      (cd "$dir" && $LT run --base-url http://127.0.0.1:18090 --rate "$RATE" --duration-secs 12 --affiliates-dist "$DIST" --server-pid "$PID" $extra) | summary "round=$round $side $DIST max=$RATE"
      (cd "$dir" && $LT run --base-url http://127.0.0.1:18090 --rate "$HALF" --duration-secs 12 --affiliates-dist "$DIST" --server-pid "$PID" $extra) | summary "round=$round $side $DIST half=$HALF"
    fi
    (cd "$dir" && $LT run --base-url http://127.0.0.1:18090 --clients "$CLIENTS" --duration-secs 12 --affiliates-dist "$DIST" --server-pid "$PID" $extra) | summary "round=$round $side $DIST sat clients=$CLIENTS"
    kill "$PID"
    while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
    # A 5xx is logged with its cause ("request failed"): keep that server's log.
    if grep -q "request failed" /tmp/komisi-bench.log; then
      kept=$(mktemp /tmp/komisi-bench-failed.XXXXXX.log)
      cp /tmp/komisi-bench.log "$kept"
      echo "round=$round: the server answered 5xx; its log is kept in $kept" >&2
    fi
  done
done
