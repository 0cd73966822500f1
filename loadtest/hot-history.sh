#!/usr/bin/env bash
# A hot affiliate with history: the one-hot-affiliate load (and a uniform
# one) at saturation on a database where that affiliate (aff-1000) already
# has N orders this month — the case where month facts summed from the
# orders table cost a scan of N rows per batch. For each build DIR (a
# checkout with `cargo build --release -p komisi -p loadtest` done), RUNS
# times: a fresh database and tree, N orders of aff-1000 written straight
# into it with MariaDB's SEQUENCE engine (and its month row in
# `affiliate_months` where the build has that table), a restart on it, then
# closed-loop runs of 12 s. The per-key rate limit is off (serve.sh).
#   loadtest/hot-history.sh [orders] [runs] [clients] DIR...
set -euo pipefail
N=${1:-1000000}
RUNS=${2:-3}
CLIENTS=${3:-128}
shift 3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LT=${KOMISI_AB_LOADTEST:-$HERE/target/release/loadtest}
DB=komisi_perf
"$HERE/loadtest/mariadb-tune.sh" "${KOMISI_BENCH_BUFFER_POOL_MB:-2048}"
summary() {
  python3 -c "import json,sys; d=json.load(sys.stdin); l=d['intake_latency']; print('$1', 'accepted/s=%.0f' % d['accepted_per_s'], 'intake p50/p99 ms=%s/%s' % (l['p50_ms'], l['p99_ms']), 'e2e events/s=%.0f' % d['end_to_end_events_per_s'], 'drain_s=%.2f' % d['drain_s'], 'errors=%s%s' % (d['errors'], d.get('errors_by_kind') or ''), 'rss_mb=%s' % d['server_memory']['peak_rss_mb'])"
}
seed() {
  # Orders placed over this month (UTC) up to now, 100 000 each, processed.
  local start
  start=$(date -u +%Y-%m-01)
  mariadb -uroot -h127.0.0.1 "$DB" -e "
    SET @start = TIMESTAMP('$start');
    SET @span = TIMESTAMPDIFF(SECOND, @start, UTC_TIMESTAMP()) - 60;
    INSERT INTO orders (id, buyer_id, affiliate_id, currency, placed_at, status, total, original_eligible,
                        program_version, request_hash, commission_status, created_at, updated_at)
    SELECT CONCAT('hist-', seq), CONCAT('hist-buyer-', seq % 100000), 'aff-1000', 'IDR',
           @start + INTERVAL FLOOR(seq * @span / $N) SECOND, 'placed', 100000, 100000, 1,
           UNHEX(SHA2(seq, 256)), 'processed', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)
    FROM seq_1_to_$N;"
  if mariadb -uroot -h127.0.0.1 "$DB" -N -e "SHOW TABLES LIKE 'affiliate_months'" | grep -q .; then
    # The month's start in the program's zone (Asia/Jakarta, UTC+7, no DST).
    mariadb -uroot -h127.0.0.1 "$DB" -e "
      INSERT INTO affiliate_months (affiliate_id, month_start, volume, orders)
      SELECT 'aff-1000', TIMESTAMP('$start') - INTERVAL 7 HOUR, SUM(original_eligible), COUNT(*)
      FROM orders WHERE affiliate_id = 'aff-1000' AND placed_at >= TIMESTAMP('$start') - INTERVAL 7 HOUR
      ON DUPLICATE KEY UPDATE volume = VALUES(volume), orders = VALUES(orders);"
  fi
}
for round in $(seq "$RUNS"); do
  for dir in "$@"; do
    PID=$(cd "$dir" && loadtest/serve.sh)
    kill "$PID"
    while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
    seeded=$(date +%s)
    seed
    echo "# $dir: $N orders of aff-1000 seeded in $(( $(date +%s) - seeded )) s" >&2
    PID=$(cd "$dir" && KOMISI_BENCH_KEEP_DB=1 loadtest/serve.sh)
    for dist in hot uniform; do
      $LT run --base-url http://127.0.0.1:18090 --clients "$CLIENTS" --duration-secs 12 --affiliates-dist "$dist" \
        --server-pid "$PID" | summary "round=$round $(basename "$dir") history=$N $dist sat clients=$CLIENTS"
    done
    kill "$PID"
    while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
  done
done
