#!/usr/bin/env bash
# Restart with a backlog: orders are accepted for SECONDS while the journal is
# unreachable (intake commits, nothing is processed); then komisi restarts
# against Redis and the time until every event is applied is measured.
#   loadtest/restart.sh [seconds] [rate]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECS=${1:-30}
RATE=${2:-700}
PID=$(loadtest/serve.sh REDIS_URL=redis://127.0.0.1:1)
./target/release/loadtest run --base-url http://127.0.0.1:18090 --rate "$RATE" --duration-secs "$SECS" \
  --drain-timeout-secs 0 --server-pid "$PID" >/dev/null
kill "$PID"
while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
open() { mariadb -uroot -h127.0.0.1 -N -e "SELECT COUNT(*) FROM komisi_perf.events WHERE status <> 'done'"; }
PENDING=$(open)
START=$(date +%s.%N)
PID=$(KOMISI_BENCH_KEEP_DB=1 loadtest/serve.sh)
while [ "$(open)" != 0 ]; do sleep 0.2; done
END=$(date +%s.%N)
python3 -c "print('restart-drain pending=$PENDING seconds=%.1f events/s=%.0f' % ($END-$START, $PENDING/($END-$START)))"
kill "$PID"
