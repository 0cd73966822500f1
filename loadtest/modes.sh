#!/usr/bin/env bash
# Embedded (SQLite) and production (MariaDB + Redis) mode back to back, RUNS
# times each: closed-loop saturation (CLIENTS clients, each sending its next
# request when the last is answered), then open loop at RATE and RATE/2; DIST
# is the affiliates' distribution (uniform, zipf[:S], hot; default uniform).
# The per-key rate limit is off (serve.sh). KOMISI_MODES_SAT_ONLY=1 runs the
# saturation case alone.
#   loadtest/modes.sh [rate] [runs] [dist] [clients]   (release build first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RATE=${1:-726}
RUNS=${2:-3}
DIST=${3:-uniform}
CLIENTS=${4:-128}
HALF=$((RATE / 2))
loadtest/mariadb-tune.sh "${KOMISI_BENCH_BUFFER_POOL_MB:-2048}"
summary() {
  python3 -c "import json,sys; d=json.load(sys.stdin); l=d['intake_latency']; print('$1', 'intake p50/p99 ms=%s/%s' % (l['p50_ms'], l['p99_ms']), 'e2e events/s=%.0f' % d['end_to_end_events_per_s'], 'drain_s=%.2f' % d['drain_s'], 'lag p99<=%s' % d['lag_upper_bound_s']['p99'], 'errors=%s%s' % (d['errors'], d.get('errors_by_kind') or ''))"
}
for round in $(seq "$RUNS"); do
  for mode in mysql embedded; do
    if [ "$mode" = embedded ]; then PID=$(KOMISI_BENCH_EMBEDDED=1 loadtest/serve.sh); else PID=$(loadtest/serve.sh); fi
    ./target/release/loadtest run --base-url http://127.0.0.1:18090 --clients "$CLIENTS" --duration-secs 12 --affiliates-dist "$DIST" --server-pid "$PID" | summary "round=$round $mode $DIST sat clients=$CLIENTS"
    if [ -z "${KOMISI_MODES_SAT_ONLY:-}" ]; then
      ./target/release/loadtest run --base-url http://127.0.0.1:18090 --rate "$RATE" --duration-secs 12 --affiliates-dist "$DIST" --server-pid "$PID" | summary "round=$round $mode $DIST max=$RATE"
      ./target/release/loadtest run --base-url http://127.0.0.1:18090 --rate "$HALF" --duration-secs 12 --affiliates-dist "$DIST" --server-pid "$PID" | summary "round=$round $mode $DIST half=$HALF"
    fi
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
