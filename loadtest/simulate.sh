#!/usr/bin/env bash
# A simulation over a seeded history (docs/PERFORMANCE.md "a simulation over
# 200 000 stored orders"): seeds ORDERS orders over 6 months straight into a
# fresh MySQL database, starts a release komisi on it, runs the program in
# force as a candidate (its delta must be exactly 0 on every total: the
# script fails otherwise), then RUNS times with level 1 doubled: levels[0],
# the category rates, the tier bonus rates and the per-order cap (which
# covers commission + tier bonus) all × 2. The seeded prices are multiples
# of 1 000 and the rates have at most 3 decimals, so no line rounds: the
# candidate's commission@1 and tier_bonus@1 must be exactly twice the
# applied ones and every other total unchanged (the script fails
# otherwise). Prints orders/s and the server's RSS for each.
#   loadtest/simulate.sh [orders] [runs]        (release build first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ORDERS=${1:-200000}
RUNS=${2:-3}
DB=${KOMISI_BENCH_DB:-seed_sim}
URL=http://127.0.0.1:18090
AUTH=(-H 'Authorization: Bearer loadtest-admin')
mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
mkdir -p /tmp/seed-load
./target/release/loadtest seed --database-url "mysql://root@127.0.0.1:3306/$DB" --orders "$ORDERS" \
  --affiliates 10000 --months 6 --load-dir /tmp/seed-load >/dev/null
PID=$(KOMISI_BENCH_KEEP_DB=1 KOMISI_BENCH_DB=$DB loadtest/serve.sh)
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 1
echo "idle rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)"
run() {
  local body id status=queued max=0 rss
  body=$(curl -sf "${AUTH[@]}" $URL/admin/program | python3 -c "
import json, sys
p = json.load(sys.stdin); p.pop('version')
if '$1' == 'double':
    from decimal import Decimal as D
    two = lambda x: str(D(x) * 2)
    p['levels'][0] = two(p['levels'][0])
    p['category_rates'] = {k: two(v) for k, v in p['category_rates'].items()}
    for t in p['tiers']: t['bonus_rate'] = two(t['bonus_rate'])
    p['max_commission_per_order'] = two(p['max_commission_per_order'])
print(json.dumps({'program': p, 'since': '2000-01-01T00:00:00Z', 'until': '2000-12-31T00:00:00Z'}))")
  # The window: the last 366 days.
  body=$(echo "$body" | python3 -c "
import json, sys, datetime
b = json.load(sys.stdin); now = datetime.datetime.now(datetime.timezone.utc)
b['since'] = (now - datetime.timedelta(days=365)).isoformat(); b['until'] = (now + datetime.timedelta(hours=1)).isoformat()
print(json.dumps(b))")
  id=$(curl -sf "${AUTH[@]}" -H 'content-type: application/json' -d "$body" $URL/admin/simulations | python3 -c "import json,sys; print(json.load(sys.stdin)['id'])")
  while [ "$status" = queued ] || [ "$status" = running ]; do
    sleep 0.2
    status=$(curl -sf "${AUTH[@]}" $URL/admin/simulations/$id | python3 -c "import json,sys; print(json.load(sys.stdin)['status'])")
    rss=$(awk '/VmRSS/ {print $2}' /proc/$PID/status); [ "$rss" -gt "$max" ] && max=$rss
  done
  curl -sf "${AUTH[@]}" $URL/admin/simulations/$id | python3 -c "
import json, sys, datetime
s = json.load(sys.stdin); r = s['result']
at = lambda x: datetime.datetime.fromisoformat(x.replace('Z', '+00:00'))
secs = (at(s['finished_at']) - at(s['started_at'])).total_seconds()
moved = [t for t in r['totals'] if t['delta'] != '0']
print('$1', 'orders=%d' % r['orders'], 'skipped=%d' % r['skipped'], 'secs=%.2f' % secs, 'orders/s=%.0f' % (r['orders'] / secs),
      'max_rss_kb=$max', 'totals_changed=%d' % len(moved))
if '$1' == 'same' and moved:
    sys.exit('the program in force must backtest to a zero delta: %s' % moved)
if '$1' == 'double':
    from decimal import Decimal as D
    doubled = ('commission', 1), ('tier_bonus', 1)
    for t in r['totals']:
        want = D(t['baseline']) * 2 if (t['kind'], t['level']) in doubled else D(t['baseline'])
        if D(t['candidate']) != want:
            sys.exit('%s@%d: candidate %s, expected exactly %s' % (t['kind'], t['level'], t['candidate'], want))
    if r['points_candidate'] != r['points_baseline']:
        sys.exit('points moved: %s' % r)
    c1 = [t for t in r['totals'] if (t['kind'], t['level']) == ('commission', 1)][0]
    print('  commission@1 %s -> %s, exactly x2; every other total unchanged' % (c1['baseline'], c1['candidate']))"
}
run same
for _ in $(seq "$RUNS"); do run double; done
mariadb -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS $DB"
