#!/usr/bin/env bash
# What tracked clicks cost the order path (issue "Attribution"): the same
# build, the same order rate (ORDERS/s, open loop), without clicks ("off")
# and with CLICKS_PER_ORDER `POST /v1/clicks` per order on the same
# affiliates ("on": ORDERS × (1 + CLICKS_PER_ORDER) requests/s, every order
# then carrying its affiliate's last click id, which intake verifies).
# Interleaved round by round on a fresh database; DIST is the affiliates'
# distribution (uniform, zipf, hot). The per-key rate limit is off
# (loadtest/serve.sh). Prints intake p50/p99 of orders (and the bucket
# komisi's own histogram puts their p99 in) and end-to-end events/s.
#   loadtest/clicks.sh [orders/s] [runs] [dist] [clicks per order]
# Needs `cargo build --release -p komisi -p loadtest`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ORDERS=${1:-250}
RUNS=${2:-3}
DIST=${3:-uniform}
CPO=${4:-20}
LT=./target/release/loadtest
BASE=http://127.0.0.1:18090
loadtest/mariadb-tune.sh "${KOMISI_BENCH_BUFFER_POOL_MB:-2048}"
summary() {
  python3 -c "import json,sys; d=json.load(sys.stdin); l=d['intake_latency']; print('$1', 'orders/s=%.0f' % d['accepted_per_s'], 'clicks/s=%.0f' % d['clicks_per_s'], 'intake p50/p99 ms=%s/%s' % (l['p50_ms'], l['p99_ms']), 'server p99 <= %s s' % d['server_orders_upper_bound_s']['p99'], 'e2e events/s=%.0f' % d['end_to_end_events_per_s'], 'drain_s=%.2f' % d['drain_s'], 'errors=%s%s' % (d['errors'], d.get('errors_by_kind') or ''), 'dropped=%s' % d['dropped'], 'cpu_ms/event=' + ' '.join('%s:%s' % kv for kv in (d.get('cpu_ms_per_event') or {}).items()))"
}
TOTAL=$(python3 -c "print($ORDERS * (1 + $CPO))")
# SIDES=off,on,healthz adds the control: as many requests to GET /healthz.
# The sides on-apart and healthz-apart send the same clicks (or GETs) from a
# thread of the generator's own at nice 19 (`--clicks-nice 19`): on this
# one machine, the nearest thing to clicks sent from other hosts.
# SERVE_ENV="K=V ..." starts komisi with those variables (e.g. TOKIO_WORKER_THREADS=8).
SIDES=${SIDES:-off on}
for round in $(seq "$RUNS"); do
  for side in ${SIDES//,/ }; do
    # shellcheck disable=SC2086 # SERVE_ENV: extra env assignments for komisi, word-split on purpose
    PID=$(loadtest/serve.sh ${SERVE_ENV:-})
    APART=()
    case "$side" in *-apart) APART=(--clicks-nice 19) ;; esac
    if [ "${side%-apart}" = on ]; then
      $LT run --base-url "$BASE" --duration-secs 20 --affiliates-dist "$DIST" --server-pid "$PID" \
        --rate "$TOTAL" --clicks-per-order "$CPO" "${APART[@]}" | summary "round=$round clicks=$side $DIST offered=$TOTAL/s"
    elif [ "${side%-apart}" = healthz ]; then
      $LT run --base-url "$BASE" --duration-secs 20 --affiliates-dist "$DIST" --server-pid "$PID" \
        --rate "$TOTAL" --clicks-per-order "$CPO" --clicks-as-healthz "${APART[@]}" | summary "round=$round $side $DIST offered=$TOTAL/s"
    else
      $LT run --base-url "$BASE" --duration-secs 20 --affiliates-dist "$DIST" --server-pid "$PID" \
        --rate "$ORDERS" | summary "round=$round clicks=off $DIST offered=$ORDERS/s"
    fi
    kill "$PID"
    while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
  done
done
