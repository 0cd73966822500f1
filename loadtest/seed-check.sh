#!/usr/bin/env bash
# `loadtest seed`'s acceptance test, on both backends: seeds a small history
# into a fresh MySQL database (seedcheck_<random>) and a fresh SQLite file,
# starts komisi on each, runs a full reconcile (it must find no violation),
# places a few orders, a refund, a cancel and a completion through the API,
# reconciles again, and drops what it created. Exits non-zero on any
# violation or failure.
#   loadtest/seed-check.sh [orders] [affiliates] [months]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ORDERS=${1:-20000}
AFFILIATES=${2:-2000}
MONTHS=${3:-3}
PORT=${KOMISI_SEEDCHECK_PORT:-18097}
URL=http://127.0.0.1:$PORT
MYSQL=${KOMISI_BENCH_MYSQL:-mysql://root@127.0.0.1:3306}
NAME=seedcheck_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
WORK=$(mktemp -d /tmp/seedcheck.XXXXXX)
SQLITE=$WORK/seed.sqlite
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
  mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $NAME" || true
  redis-cli --scan --pattern "$NAME*" | xargs -r redis-cli DEL >/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

nice -n 10 cargo build --release -q -p komisi -p loadtest
LT=./target/release/loadtest

# Starts komisi on $1 (database URL), extra env after it; waits until ready.
serve() {
  local db=$1
  shift
  env DATABASE_URL="$db" KOMISI_STOREFRONT_KEYS=seedcheck KOMISI_ADMIN_KEYS=seedcheck-admin RUST_LOG=warn \
    KOMISI_RECONCILE_EVERY_MS=0 KOMISI_RECONCILE_FULL_EVERY_MS=0 "$@" \
    ./target/release/komisi serve --bind "127.0.0.1:$PORT" >"$WORK/komisi.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 300); do curl -sf "$URL/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "komisi did not get ready:" >&2
  cat "$WORK/komisi.log" >&2
  return 1
}

stop() {
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=
}

# A full reconcile, waited for; fails unless it finds no violation.
reconcile() {
  local label=$1 out
  out=$(curl -sf -m 3600 -X POST "$URL/admin/reconcile" -H 'Authorization: Bearer seedcheck-admin' \
    -H 'content-type: application/json' -d '{"kind":"full","wait":true}')
  echo "$out" | python3 -c "
import json, sys
d = json.load(sys.stdin)
print('$label: full reconcile', d['status'], 'violations', d['violations_total'], 'checked', json.dumps(d['checked']))
for v in d['violations'][:20]:
    print('  ', json.dumps(v))
sys.exit(0 if d['status'] == 'done' and d['violations_total'] == 0 else 1)"
}

post() {
  local path=$1 body=${2:-}
  local args=(-sf -X POST "$URL$path" -H 'Authorization: Bearer seedcheck')
  [ -n "$body" ] && args+=(-H 'content-type: application/json' -d "$body")
  curl "${args[@]}" >/dev/null
}

# New orders on top of the history: one through the busiest affiliate of the
# current month (its month facts must include the seeded volume), one new
# buyer, a refund and a cancel of seeded orders, a completion.
traffic() {
  local label=$1 busiest=$2
  post /v1/orders "{\"id\":\"check-1\",\"buyer_id\":\"buyer-1\",\"referral_code\":\"code-${busiest#aff-}\",\"currency\":\"IDR\",\"items\":[{\"sku\":\"a\",\"category\":\"fashion\",\"quantity\":2,\"unit_price\":\"750000\"}]}"
  post /v1/orders '{"id":"check-2","buyer_id":"buyer-seedcheck-new","referral_code":"code-1500","currency":"IDR","items":[{"sku":"a","category":"electronics","quantity":1,"unit_price":"2000000"},{"sku":"b","category":"gift-card","quantity":1,"unit_price":"100000"}]}'
  post /v1/orders '{"id":"check-3","buyer_id":"buyer-2","currency":"IDR","items":[{"sku":"a","category":"food","quantity":3,"unit_price":"60000"}]}'
  post /v1/orders/check-1/refunds '{"refund_id":"check-r1","items":[{"sku":"a","quantity":1}]}'
  post /v1/orders/check-3/cancel
  post /v1/orders/check-2/complete
  # Wait until every event is applied.
  for _ in $(seq 1 100); do
    [ "$(curl -sf "$URL/v1/orders/check-3" -H 'Authorization: Bearer seedcheck' | python3 -c "import json,sys; print(json.load(sys.stdin)['commission_status'])")" = processed ] &&
      [ "$(curl -sf "$URL/v1/orders/check-1" -H 'Authorization: Bearer seedcheck' | python3 -c "import json,sys; print(json.load(sys.stdin)['commission_status'])")" = processed ] && break
    sleep 0.2
  done
  echo "$label: placed 3 orders, a refund, a cancel and a completion through the API"
}

# The busiest affiliate of the current month, and the month facts komisi
# froze for check-1 (they must count the seeded orders before it).
check_month_facts() {
  local label=$1 query=$2 busiest=$3 seeded_orders=$4
  local nth
  nth=$($query "SELECT context FROM orders WHERE id = 'check-1'" | python3 -c "import json,sys; print(json.load(sys.stdin)['nth_in_month'])")
  if [ "$nth" != "$((seeded_orders + 1))" ]; then
    echo "$label: check-1 is order $nth of $busiest's month, expected $((seeded_orders + 1))" >&2
    return 1
  fi
  echo "$label: check-1 is order $nth of $busiest's month (after the $seeded_orders seeded ones)"
}

echo "# MySQL: $NAME"
mariadb -uroot -h127.0.0.1 -e "CREATE DATABASE $NAME"
mkdir -p "$WORK/load"
chmod 755 "$WORK" "$WORK/load"
$LT seed --database-url "$MYSQL/$NAME" --orders "$ORDERS" --affiliates "$AFFILIATES" --months "$MONTHS" \
  --load-dir "$WORK/load" >"$WORK/mysql.json"
python3 -c "import json; d=json.load(open('$WORK/mysql.json')); print('mysql: seeded', d['orders'], 'orders,', d['events_total'], 'events,', d['ledger_entries'], 'ledger entries in %.1f s' % d['elapsed_s'])"
myq() { mariadb -uroot -h127.0.0.1 -N "$NAME" -e "$1"; }
read -r BUSIEST SEEDED < <(myq "SELECT affiliate_id, orders FROM affiliate_months ORDER BY month_start DESC, orders DESC LIMIT 1")
serve "$MYSQL/$NAME" REDIS_URL=redis://127.0.0.1:6379 KOMISI_REDIS_PREFIX="$NAME"
reconcile mysql
traffic mysql "$BUSIEST"
check_month_facts mysql myq "$BUSIEST" "$SEEDED"
reconcile "mysql after new orders"
stop

echo "# SQLite: $SQLITE"
$LT seed --database-url "sqlite://$SQLITE" --orders "$ORDERS" --affiliates "$AFFILIATES" --months "$MONTHS" >"$WORK/sqlite.json"
python3 -c "import json; d=json.load(open('$WORK/sqlite.json')); print('sqlite: seeded', d['orders'], 'orders,', d['events_total'], 'events,', d['ledger_entries'], 'ledger entries in %.1f s' % d['elapsed_s'])"
liteq() { sqlite3 "$SQLITE" "$1" | tr '|' '\t'; }
read -r BUSIEST SEEDED < <(liteq "SELECT affiliate_id, orders FROM affiliate_months ORDER BY month_start DESC, orders DESC LIMIT 1")
serve "sqlite://$SQLITE"
reconcile sqlite
traffic sqlite "$BUSIEST"
check_month_facts sqlite liteq "$BUSIEST" "$SEEDED"
reconcile "sqlite after new orders"
stop
echo "seed-check: both backends consistent"
