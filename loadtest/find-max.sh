#!/usr/bin/env bash
# The maximum sustained rate, RUNS times, each on a fresh server and database:
# ramps the offered rate by 10 % per 20 s step from START while the backlog drains within 2 s
# of the end and lag p99 stays ≤ 1 s (see `loadtest find-max --help`).
#   loadtest/find-max.sh [start_rate] [runs]        (release build first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
START=${1:-1000}
RUNS=${2:-3}
cargo build --release -q -p komisi -p loadtest
loadtest/mariadb-tune.sh "${KOMISI_BENCH_BUFFER_POOL_MB:-2048}"
for _ in $(seq "$RUNS"); do
  PID=$(loadtest/serve.sh)
  ./target/release/loadtest find-max --base-url http://127.0.0.1:18090 --start-rate "$START" --factor 1.1 \
    --server-pid "$PID" | python3 -c "import json,sys; d=json.load(sys.stdin)['max_sustained'] or {}; print('max sustained: offered %s/s, end-to-end %.0f events/s' % (d.get('offered_rate'), d.get('end_to_end_events_per_s', 0)))"
done
kill "$PID"
