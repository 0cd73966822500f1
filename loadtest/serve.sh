#!/usr/bin/env bash
# Starts a release komisi for load tests on a fresh database and Redis prefix.
#   loadtest/serve.sh [extra env assignments...]   prints the server pid
# e.g. loadtest/serve.sh KOMISI_BENCH_COMMISSION_DELAY_MS=200
# KOMISI_BENCH_KEEP_DB=1 restarts on the existing database (no setup);
# KOMISI_BENCH_DB names the MySQL database (default komisi_perf).
# The per-key rate limit is off: every client uses one key, and find-max
# pushes past the default 5 000 requests a second (the figures say so).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MYSQL=${KOMISI_BENCH_MYSQL:-mysql://root@127.0.0.1:3306}
PORT=${KOMISI_BENCH_PORT:-18090}
NAME=${KOMISI_BENCH_DB:-komisi_perf}
# A previous server still draining would consume this run's journal entries:
# wait until it has exited.
pkill -f "komisi serve --bind 127.0.0.1:$PORT" 2>/dev/null || true
for _ in $(seq 1 300); do pgrep -f "komisi serve --bind 127.0.0.1:$PORT" >/dev/null || break; sleep 0.1; done
if [ -z "${KOMISI_BENCH_KEEP_DB:-}" ]; then
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $NAME; CREATE DATABASE $NAME"
  redis-cli --scan --pattern "*$NAME*" | xargs -r redis-cli DEL >/dev/null
fi
# KOMISI_BENCH_EMBEDDED=1: the embedded mode instead (SQLite file, no Redis).
if [ -n "${KOMISI_BENCH_EMBEDDED:-}" ]; then
  DB=${KOMISI_BENCH_SQLITE:-/tmp/komisi_perf.db}
  if [ -z "${KOMISI_BENCH_KEEP_DB:-}" ]; then rm -f "$DB" "$DB-wal" "$DB-shm"; fi
  STORE=(DATABASE_URL="sqlite://$DB")
else
  STORE=(DATABASE_URL="$MYSQL/$NAME" REDIS_URL=redis://127.0.0.1:6379 KOMISI_REDIS_PREFIX=$NAME)
fi
env "${STORE[@]}" \
  KOMISI_STOREFRONT_KEYS=loadtest KOMISI_ADMIN_KEYS=loadtest-admin RUST_LOG=warn \
  KOMISI_RATE_LIMIT_PER_SEC=0 "$@" \
  ./target/release/komisi serve --bind "127.0.0.1:$PORT" >/tmp/komisi-bench.log 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
if [ -z "${KOMISI_BENCH_KEEP_DB:-}" ]; then
  ./target/release/loadtest setup --base-url "http://127.0.0.1:$PORT" --affiliates "${KOMISI_BENCH_AFFILIATES:-10000}" >&2
fi
echo "$pid"
