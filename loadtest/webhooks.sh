#!/usr/bin/env bash
# What webhooks cost on the order path: the same build with no endpoint
# ("off") and with one endpoint subscribed to `*` ("on", a receiver on this
# machine: `loadtest sink`, answering 204 at once), interleaved round by
# round so the machine's drift hits both alike. Each round runs at RATE and
# RATE/2 in open loop and at saturation (CLIENTS closed-loop clients), on a
# fresh database; DIST is the affiliates' distribution (uniform, zipf, hot).
# For "on" it waits after each run until the sink has every message (the
# webhook drain) and prints the deliveries and the commit → arrival lag.
# The per-key rate limit is off (loadtest/serve.sh).
#   loadtest/webhooks.sh [rate] [runs] [dist] [clients]
# Needs `cargo build --release -p komisi -p loadtest`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RATE=${1:-726}
RUNS=${2:-3}
DIST=${3:-uniform}
CLIENTS=${4:-128}
HALF=$((RATE / 2))
LT=./target/release/loadtest
SINK_PORT=${KOMISI_SINK_PORT:-18095}
BASE=http://127.0.0.1:18090
loadtest/mariadb-tune.sh "${KOMISI_BENCH_BUFFER_POOL_MB:-2048}"
$LT sink --port "$SINK_PORT" 2>/dev/null &
SINK=$!
trap 'kill $SINK 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$SINK_PORT/stats" >/dev/null && break; sleep 0.1; done
summary() {
  python3 -c "import json,sys; d=json.load(sys.stdin); l=d['intake_latency']; print('$1', 'accepted/s=%.0f' % d['accepted_per_s'], 'intake p50/p99 ms=%s/%s' % (l['p50_ms'], l['p99_ms']), 'e2e events/s=%.0f' % d['end_to_end_events_per_s'], 'drain_s=%.2f' % d['drain_s'], 'errors=%s%s' % (d['errors'], d.get('errors_by_kind') or ''), 'cpu_ms/event=' + ' '.join('%s:%s' % kv for kv in (d.get('cpu_ms_per_event') or {}).items()))"
}
# Waits until the sink has had every message komisi wrote (none pending),
# then prints the deliveries and the lag of the run.
webhook_drain() {
  local started=$SECONDS pending
  while :; do
    pending=$(curl -s "$BASE/admin/webhook-messages?status=pending&limit=1" -H "Authorization: Bearer loadtest-admin" |
      python3 -c "import json,sys; print(len(json.load(sys.stdin)['items']))")
    [ "$pending" = 0 ] && break
    [ $((SECONDS - started)) -gt 600 ] && { echo "webhook drain: still pending after 600 s"; break; }
    sleep 0.5
  done
  curl -s "http://127.0.0.1:$SINK_PORT/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print('   webhooks: deliveries=%s distinct=%s lag p50/p99/max ms=%s/%s/%s drain_after_run_s=$((SECONDS - started))' % (d['deliveries'], d['distinct_ids'], d['lag_p50_ms'], d['lag_p99_ms'], d['lag_max_ms']))"
  curl -s -X POST "http://127.0.0.1:$SINK_PORT/reset" >/dev/null
}
run() {
  local side=$1 label=$2
  shift 2
  $LT run --base-url "$BASE" --duration-secs 12 --affiliates-dist "$DIST" --server-pid "$PID" "$@" | summary "$label"
  if [ "$side" = on ]; then webhook_drain; fi
}
for round in $(seq "$RUNS"); do
  for side in off on; do
    PID=$(loadtest/serve.sh KOMISI_WEBHOOK_ALLOW_PRIVATE=true)
    if [ "$side" = on ]; then
      curl -sf -X POST "$BASE/admin/webhooks" -H "Authorization: Bearer loadtest-admin" -H 'Content-Type: application/json' \
        -d "{\"url\":\"http://127.0.0.1:$SINK_PORT/hook\",\"event_types\":[\"*\"]}" >/dev/null
    fi
    curl -s -X POST "http://127.0.0.1:$SINK_PORT/reset" >/dev/null
    run "$side" "round=$round webhooks=$side $DIST max=$RATE" --rate "$RATE"
    run "$side" "round=$round webhooks=$side $DIST half=$HALF" --rate "$HALF"
    run "$side" "round=$round webhooks=$side $DIST sat clients=$CLIENTS" --clients "$CLIENTS"
    kill "$PID"
    while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
  done
done
