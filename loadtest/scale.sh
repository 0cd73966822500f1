#!/usr/bin/env bash
# The same load through 1, 2, 3… komisi instances on one MariaDB database and
# one Redis prefix (docs/SCALING.md): for each of RUNS rounds and each count N
# in COUNTS, N fresh release servers on ports 18091… (a fresh database each
# time), the affiliate tree, then `loadtest run` at RATE spread round-robin
# over the N instances (their metrics summed); DIST is the affiliates'
# distribution (uniform, zipf[:S], hot). The instances share one database
# connection budget, that of one instance with the defaults (16 request + 20
# worker connections): each of N gets 1/N of it (at least 4 + 6), so the
# curve shows what more processes give on the same database, and N × ~43
# connections never exceeds MariaDB's default max_connections (151).
#   loadtest/scale.sh ["1 2 3"] [rate] [runs] [dist] [secs]
# Needs `cargo build --release -p komisi -p loadtest` first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
COUNTS=${1:-"1 2 3"}
RATE=${2:-700}
RUNS=${3:-3}
DIST=${4:-zipf}
SECS=${5:-12}
MYSQL=${KOMISI_BENCH_MYSQL:-mysql://root@127.0.0.1:3306}
"$(dirname "${BASH_SOURCE[0]}")/mariadb-tune.sh" "${KOMISI_BENCH_BUFFER_POOL_MB:-2048}"
PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done; done
  PIDS=()
}
trap stop_all EXIT
summary() {
  python3 -c "import json,sys; d=json.load(sys.stdin); l=d['intake_latency']; print('$1', 'accepted/s=%.0f' % d['accepted_per_s'], 'intake p50/p99 ms=%s/%s' % (l['p50_ms'], l['p99_ms']), 'e2e events/s=%.0f' % d['end_to_end_events_per_s'], 'drain_s=%.2f' % d['drain_s'], 'errors=%s %s' % (d['errors'], d.get('errors_by_kind') or ''), 'dropped=%s' % d['dropped'])"
}
for round in $(seq "$RUNS"); do
  for n in $COUNTS; do
    mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS komisi_perf; CREATE DATABASE komisi_perf"
    redis-cli --scan --pattern '*komisi_perf*' | xargs -r redis-cli DEL >/dev/null
    urls=""
    req=$((16 / n)) work=$((20 / n))
    [ "$req" -ge 4 ] || req=4
    [ "$work" -ge 6 ] || work=6
    for i in $(seq "$n"); do
      port=$((18090 + i))
      env DATABASE_URL="$MYSQL/komisi_perf" REDIS_URL="${KOMISI_BENCH_REDIS:-redis://127.0.0.1:6379}" \
        KOMISI_REDIS_PREFIX=komisi_perf KOMISI_INSTANCE_ID="bench-$i" \
        KOMISI_DB_MAX_CONNECTIONS=$req KOMISI_DB_WORKER_CONNECTIONS=$work KOMISI_EVENT_WORKERS=$((work < 16 ? work : 16)) \
        KOMISI_STOREFRONT_KEYS=loadtest KOMISI_ADMIN_KEYS=loadtest-admin RUST_LOG=warn KOMISI_RATE_LIMIT_PER_SEC=0 \
        ./target/release/komisi serve --bind "127.0.0.1:$port" >"/tmp/komisi-scale-$i.log" 2>&1 &
      PIDS+=($!)
      # The first migrates the fresh database; the others start after it.
      for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
      urls+="${urls:+,}http://127.0.0.1:$port"
    done
    ./target/release/loadtest setup --base-url "http://127.0.0.1:18091" --affiliates "${KOMISI_BENCH_AFFILIATES:-10000}" >&2
    # Every instance owns its share of the partitions before the load starts.
    sleep 3
    ./target/release/loadtest run --base-url "$urls" --rate "$RATE" --duration-secs "$SECS" --affiliates-dist "$DIST" |
      summary "round=$round instances=$n $DIST rate=$RATE"
    stop_all
  done
done
