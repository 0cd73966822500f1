#!/usr/bin/env bash
# komisi on a database with history (docs/PERFORMANCE.md "History"): every
# figure of the set on one database, in this order (a seeded database warmed
# and aged first: see KOMISI_HISTORY_AGE_SECS below) —
#   1. end-to-end events/s at saturation (closed loop), uniform, Zipf, hot;
#   2. intake p99 in open loop at half the uniform saturation rate, with the
#      operator's reads (`loadtest reads`, 20/s each) alongside: their p99;
#   3. a full reconcile sweep: its time, and saturation while it runs;
#   4. an incremental reconcile after 10 000 new orders: its time;
#   5. disk bytes per order (tables and indexes) and the server's RSS.
# The database: MySQL `$KOMISI_BENCH_DB` (e.g. seed_1m from `loadtest seed`),
# or with KOMISI_BENCH_EMBEDDED=1 the SQLite file `$KOMISI_BENCH_SQLITE`;
# LABEL `empty` starts from a fresh database instead (serve.sh's setup). The
# scheduled reconcile is off (KOMISI_RECONCILE_EVERY_MS=0): the runs are the
# ones started here. The per-key rate limit is off (serve.sh).
# KOMISI_HISTORY_SKIP lists parts to leave out: `saturation`, `half` (the
# half-rate run with the reads; left out too when saturation is, unless
# KOMISI_HISTORY_HALF gives the rate), `sweep` (the full sweep and the
# saturation during it), `incremental` (10 000 orders then an incremental
# run, RUNS times) — on 10 M orders the sweep takes about an hour.
#   loadtest/history.sh LABEL [runs] [clients]      (release build first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LABEL=${1:?label: empty, or what the database holds}
RUNS=${2:-3}
CLIENTS=${3:-128}
URL=http://127.0.0.1:18090
LT=./target/release/loadtest
NAME=${KOMISI_BENCH_DB:-komisi_perf}
ADMIN=(-H 'Authorization: Bearer loadtest-admin' -H 'content-type: application/json')
loadtest/mariadb-tune.sh "${KOMISI_BENCH_BUFFER_POOL_MB:-8192}"
summary() {
  python3 -c "import json,sys; d=json.load(sys.stdin); l=d['intake_latency']; print('$LABEL $1', 'accepted/s=%.0f' % d['accepted_per_s'], 'intake p50/p99 ms=%s/%s' % (l['p50_ms'], l['p99_ms']), 'e2e events/s=%.0f' % d['end_to_end_events_per_s'], 'drain_s=%.2f' % d['drain_s'], 'errors=%s%s' % (d['errors'], d.get('errors_by_kind') or ''), 'rss_mb=%s' % d['server_memory']['rss_mb'], 'cpu_ms/event=' + ' '.join('%s:%s' % kv for kv in (d.get('cpu_ms_per_event') or {}).items()))"
}
skipped() { [[ " ${KOMISI_HISTORY_SKIP:-} " == *" $1 "* ]]; }
orders() {
  if [ -n "${KOMISI_BENCH_EMBEDDED:-}" ]; then
    sqlite3 "${KOMISI_BENCH_SQLITE:-/tmp/komisi_perf.db}" "SELECT COUNT(*) FROM orders"
  else
    mariadb -uroot -h127.0.0.1 -N "$NAME" -e "SELECT COUNT(*) FROM orders"
  fi
}
# A seeded database is warmed first like a running server's (loadtest/warm.sh;
# KOMISI_HISTORY_WARM=0 measures the cold pool instead).
if [ "$LABEL" != empty ] && [ -z "${KOMISI_BENCH_EMBEDDED:-}" ] && [ "${KOMISI_HISTORY_WARM:-1}" != 0 ]; then
  loadtest/warm.sh "$NAME"
fi
if [ "$LABEL" = empty ]; then
  PID=$(KOMISI_RECONCILE_EVERY_MS=0 loadtest/serve.sh)
else
  PID=$(KOMISI_BENCH_KEEP_DB=1 KOMISI_RECONCILE_EVERY_MS=0 loadtest/serve.sh)
fi
echo "# $LABEL: $(orders) orders; rss_mb at start $(awk '/VmRSS/ {print $2 / 1024}' "/proc/$PID/status")"
# A seeded database's keys were just built by sorting, every page full: the
# first tens of thousands of orders split a page at nearly every insert into
# an index (page splits an order fall from 1.3 to the empty database's 0.4
# over ~50 000 orders at 10 M), which a database grown by a year of orders
# does not. KOMISI_HISTORY_AGE_SECS seconds of uniform saturation first (60
# by default on a seeded database; 0 measures right after the build). An
# empty database whose saturation rounds are left out is aged the same way
# (60 s by default): the half-rate run otherwise starts on a database with no
# order to read and every table still growing its first pages, where intake's
# p99 is several times an aged one's (45 and 127 ms against 8–28 ms at 10 M).
AGE_DEFAULT=60
[ "$LABEL" = empty ] && ! skipped saturation && AGE_DEFAULT=0
AGE=${KOMISI_HISTORY_AGE_SECS:-$AGE_DEFAULT}
if [ "$AGE" -gt 0 ]; then
  # InnoDB's page-split counter (MySQL only; off by default).
  splits() { mariadb -uroot -h127.0.0.1 -N -e "SELECT COUNT FROM information_schema.INNODB_METRICS WHERE NAME = 'index_page_splits'"; }
  [ -z "${KOMISI_BENCH_EMBEDDED:-}" ] && mariadb -uroot -h127.0.0.1 -e "SET GLOBAL innodb_monitor_enable = 'index_page_splits'" && before=$(splits)
  aged=$($LT run --base-url $URL --clients "$CLIENTS" --duration-secs "$AGE" --server-pid "$PID" |
    python3 -c "import json,sys; print(json.load(sys.stdin)['orders_accepted'])")
  if [ -n "${KOMISI_BENCH_EMBEDDED:-}" ]; then
    echo "# aged: $aged orders in $AGE s"
  else
    echo "# aged: $aged orders in $AGE s, $(python3 -c "print('%.2f' % (($(splits) - $before) / max($aged, 1)))") page splits an order"
  fi
fi

accepted=()
skipped saturation || echo "# saturation, $CLIENTS clients"
for round in $(skipped saturation || seq "$RUNS"); do
  for dist in uniform zipf:1.1 hot; do
    out=$($LT run --base-url $URL --clients "$CLIENTS" --duration-secs 12 --affiliates-dist "$dist" --server-pid "$PID")
    echo "$out" | summary "round=$round sat $dist"
    [ "$dist" = uniform ] && accepted+=("$(echo "$out" | python3 -c "import json,sys; print(int(json.load(sys.stdin)['accepted_per_s']))")")
  done
done
HALF=${KOMISI_HISTORY_HALF:-$(printf '%s\n' "${accepted[@]}" | sort -n | awk '{a[NR]=$1} END {print int(a[int((NR+1)/2)] / 2)}')}

[ "$HALF" -gt 0 ] && ! skipped half && echo "# half rate ($HALF/s) with the operator's reads alongside (20/s each)"
for round in $( ([ "$HALF" -gt 0 ] && ! skipped half) && seq "$RUNS"); do
  $LT reads --base-url $URL --rate 20 --duration-secs 12 >/tmp/history-reads.json &
  reads=$!
  $LT run --base-url $URL --rate "$HALF" --duration-secs 12 --server-pid "$PID" | summary "round=$round half=$HALF"
  wait "$reads"
  python3 -c "import json; d=json.load(open('/tmp/history-reads.json')); print('$LABEL round=$round reads p50/p99 ms', ' '.join('%s=%s/%s' % (k, v['p50_ms'], v['p99_ms']) for k, v in d['latency'].items()), 'errors=%s%s' % (d['errors'], d.get('errors_by_kind') or ''))"
done

if ! skipped sweep; then
  echo "# a full reconcile sweep, with saturation (uniform) while it runs"
  curl -sf "${ADMIN[@]}" -XPOST -d '{"kind": "full"}' $URL/admin/reconcile >/dev/null
  for round in $(seq "$RUNS"); do
    $LT run --base-url $URL --clients "$CLIENTS" --duration-secs 12 --server-pid "$PID" | summary "round=$round sat uniform during-sweep"
  done
  while curl -sf "${ADMIN[@]}" $URL/admin/reconcile | python3 -c "import json,sys; sys.exit(0 if json.load(sys.stdin)['running'] else 1)"; do sleep 2; done
  curl -sf "${ADMIN[@]}" $URL/admin/reconcile | python3 -c "
import json,sys; from datetime import datetime
l = json.load(sys.stdin)['last']; t = lambda s: datetime.fromisoformat(s.replace('Z', '+00:00'))
print('$LABEL full sweep: ok=%s orders=%s seconds=%.1f violations=%s' % (l['ok'], l['checked']['orders'], (t(l['finished_at']) - t(l['started_at'])).total_seconds(), l['violations_total']))"
  echo "$LABEL peak rss_mb after the sweep: $(awk '/VmHWM/ {print $2 / 1024}' "/proc/$PID/status")"
fi

if ! skipped incremental; then
  echo "# an incremental reconcile after 10 000 new orders"
  for _ in 1 2; do curl -sf "${ADMIN[@]}" -XPOST -d '{"kind": "incremental", "wait": true}' $URL/admin/reconcile >/dev/null; done
  for round in $(seq "$RUNS"); do
    $LT run --base-url $URL --rate 1000 --duration-secs 10 --refund-share 0 --complete-share 0 --server-pid "$PID" >/dev/null
    curl -sf "${ADMIN[@]}" -XPOST -d '{"kind": "incremental", "wait": true}' $URL/admin/reconcile | python3 -c "
import json,sys; from datetime import datetime
l = json.load(sys.stdin); t = lambda s: datetime.fromisoformat(s.replace('Z', '+00:00'))
print('$LABEL round=$round incremental after 10 000 orders: ok=%s checked=%s seconds=%.2f' % (l['ok'], l['checked'], (t(l['finished_at']) - t(l['started_at'])).total_seconds()))"
  done
fi

n=$(orders)
if [ -n "${KOMISI_BENCH_EMBEDDED:-}" ]; then
  f=${KOMISI_BENCH_SQLITE:-/tmp/komisi_perf.db}
  bytes=$(( $(stat -c %s "$f") + $(stat -c %s "$f-wal" 2>/dev/null || echo 0) ))
else
  mariadb -uroot -h127.0.0.1 -N "$NAME" -e "SELECT CONCAT('ANALYZE TABLE ', table_name, ';') FROM information_schema.tables WHERE table_schema = '$NAME'" | mariadb -uroot -h127.0.0.1 "$NAME" >/dev/null
  bytes=$(mariadb -uroot -h127.0.0.1 -N -e "SELECT SUM(data_length + index_length) FROM information_schema.tables WHERE table_schema = '$NAME'")
fi
echo "$LABEL disk: $n orders, $bytes bytes, $(( bytes / n )) bytes/order; rss_mb at the end $(awk '/VmRSS/ {print $2 / 1024}' "/proc/$PID/status")"
kill "$PID"
while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
