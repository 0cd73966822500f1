#!/usr/bin/env bash
# The figures of docs/PERFORMANCE.md, in one run: the raw-database baseline and
# komisi measured back to back on this machine, each 3 times (medians in the
# doc), komisi under uniform, Zipf-skewed and one-hot-affiliate load.
#   loadtest/bench.sh [max_rate] [runs]        (release build first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MAX=${1:-1210}
RUNS=${2:-3}
CLIENTS=${3:-128}
HALF=$((MAX / 2))
URL=http://127.0.0.1:18090
LT=./target/release/loadtest
cargo build --release -q -p komisi -p loadtest
loadtest/mariadb-tune.sh "${KOMISI_BENCH_BUFFER_POOL_MB:-2048}"
summary() {
  python3 -c "import json,sys; d=json.load(sys.stdin); l=d['intake_latency']; print('$1', 'accepted/s=%.0f' % d['accepted_per_s'], 'intake p50/p99/p99.9 ms=%s/%s/%s' % (l['p50_ms'], l['p99_ms'], l['p999_ms']), 'e2e events/s=%.0f' % d['end_to_end_events_per_s'], 'drain_s=%.2f' % d['drain_s'], 'lag p50/p99 <= %s/%s s' % (d['lag_upper_bound_s']['p50'], d['lag_upper_bound_s']['p99']), 'errors=%s dropped=%s' % (d['errors'], d['dropped']), 'rss_mb=%s' % d['server_memory']['peak_rss_mb'])"
}
echo "# baseline (raw sqlx, same transactions), connections 32 and 16; then its intake transaction alone in open loop at $HALF/s (the durable-commit latency floor)"
for _ in $(seq "$RUNS"); do
  $LT baseline --duration-secs 10 --connections 32 | python3 -c "import json,sys; print('baseline32 orders/s=%.0f' % json.load(sys.stdin)['orders_per_s'])"
  $LT baseline --duration-secs 10 --connections 16 | python3 -c "import json,sys; print('baseline16 orders/s=%.0f' % json.load(sys.stdin)['orders_per_s'])"
  $LT baseline --duration-secs 12 --connections 32 --rate "$HALF" --intake-only | python3 -c "import json,sys; d=json.load(sys.stdin); l=d['intake_latency']; print('baseline-intake-only half=$HALF orders/s=%.0f intake p50/p99/p99.9 ms=%s/%s/%s' % (d['orders_per_s'], l['p50_ms'], l['p99_ms'], l['p999_ms']))"
done
PID=$(loadtest/serve.sh)
echo "# komisi at $MAX/s (saturation) and $HALF/s (half), orders spread uniformly; then at $MAX/s with Zipf-skewed (S = 1.1) and one-hot-affiliate orders"
for _ in $(seq "$RUNS"); do
  $LT run --base-url $URL --rate "$MAX" --duration-secs 12 --server-pid "$PID" | summary "max=$MAX"
  $LT run --base-url $URL --rate "$HALF" --duration-secs 12 --server-pid "$PID" | summary "half=$HALF"
  $LT run --base-url $URL --rate "$MAX" --duration-secs 12 --server-pid "$PID" --affiliates-dist zipf:1.1 | summary "zipf1.1 max=$MAX"
  $LT run --base-url $URL --rate "$MAX" --duration-secs 12 --server-pid "$PID" --affiliates-dist hot | summary "hot max=$MAX"
done
echo "# komisi at saturation: closed loop, $CLIENTS clients, per distribution (rate limit off)"
for _ in $(seq "$RUNS"); do
  for dist in uniform zipf:1.1 hot; do
    $LT run --base-url $URL --clients "$CLIENTS" --duration-secs 12 --server-pid "$PID" --affiliates-dist "$dist" | summary "sat $dist clients=$CLIENTS"
  done
done
PID=$(loadtest/serve.sh KOMISI_BENCH_COMMISSION_DELAY_MS=200)
echo "# komisi with every commission computation delayed 200 ms"
for _ in $(seq "$RUNS"); do
  $LT run --base-url $URL --rate "$HALF" --duration-secs 12 --server-pid "$PID" | summary "delay200 half=$HALF"
  $LT run --base-url $URL --rate "$MAX" --duration-secs 12 --server-pid "$PID" | summary "delay200 max=$MAX"
done
echo "# restart with a backlog: orders accepted while the journal is down, then a restart"
kill "$PID"
loadtest/restart.sh 30 700
echo "# faults on a hot affiliate: 3 SIGKILLs and a Redis wipe under load, time to drain after the last"
loadtest/faults.sh 300 hot
