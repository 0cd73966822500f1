#!/usr/bin/env bash
# The reliability scenario on a hot affiliate: orders posted at RATE/s, all
# through one affiliate, while komisi is SIGKILLed and restarted 3 times and
# the Redis keys of its prefix are deleted; the clients stop 2 s after the
# last fault. Reports how long the backlog takes to drain after the last
# fault, the most journal entries the stream ever held per open event, and
# checks the ledger (reconcile: balances, every order's ledger = its
# entitlement, no duplicate entry; no order answered 2xx is missing).
#   loadtest/faults.sh [rate] [dist]        (release build first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RATE=${1:-300}
DIST=${2:-hot}
URL=http://127.0.0.1:18090
SQL() { mariadb -uroot -h127.0.0.1 -N -e "$1"; }
open_events() { SQL "SELECT COUNT(*) FROM komisi_perf.events WHERE status <> 'done'"; }
# Journal entries per event: the stream keeps acknowledged entries until it is
# trimmed, so this is every copy ever written (since the last wipe), live or not.
# Summed over the 16 partition streams ({komisi_perf:p00}:journal …).
xlen_all() {
  local n=0 p
  for p in $(seq 0 15); do n=$((n + $(redis-cli XLEN "$(printf '{komisi_perf:p%02d}:journal' "$p")"))); done
  echo "$n"
}
copies() { python3 -c "print(round($(xlen_all) / max(1, $(SQL 'SELECT COUNT(*) FROM komisi_perf.events')), 2))"; }
PID=$(loadtest/serve.sh)
./target/release/loadtest run --base-url $URL --rate "$RATE" --duration-secs 13 --drain-timeout-secs 0 \
  --affiliates-dist "$DIST" --refund-share 0 --complete-share 0 >/tmp/komisi-faults-run.json 2>&1 &
CLIENT=$!
for at in 3 6 9; do
  sleep 3
  kill -9 "$PID"
  PID=$(KOMISI_BENCH_KEEP_DB=1 loadtest/serve.sh)
  echo "t=${at}s SIGKILL + restart (open events $(open_events))"
done
sleep 2
redis-cli --scan --pattern '*komisi_perf*' | xargs -r redis-cli DEL >/dev/null
LAST=$(date +%s.%N)
echo "t=11s Redis keys deleted (open events $(open_events))"
wait "$CLIENT" || true
while [ "$(open_events)" != 0 ]; do sleep 0.5; done
END=$(date +%s.%N)
ACCEPTED=$(python3 -c "import json; print(json.load(open('/tmp/komisi-faults-run.json'))['orders_accepted'])")
STORED=$(SQL "SELECT COUNT(*) FROM komisi_perf.orders")
REPORT=$(curl -sf -X POST -H 'Authorization: Bearer loadtest-admin' -H 'Content-Type: application/json' -d '{"wait": true}' $URL/admin/reconcile)
python3 - "$LAST" "$END" "$ACCEPTED" "$STORED" "$(copies)" "$REPORT" <<'PY'
import json, sys
last, end, accepted, stored, copies, report = sys.argv[1:]
r = json.loads(report)
print("drain after last fault: %.1f s; orders answered 2xx %s, stored %s; journal entries since the wipe per event %s; reconcile ok=%s checked=%s violations=%d"
      % (float(end) - float(last), accepted, stored, copies, r["ok"], r["checked"], len(r["violations"])))
PY
kill "$PID"
