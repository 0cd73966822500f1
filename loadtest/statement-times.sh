#!/usr/bin/env bash
# Where MariaDB's time goes, by statement shape: its slow log with
# long_query_time = 0 and InnoDB's figures (log_slow_verbosity = innodb),
# switched on for one closed-loop run of SECS seconds (CLIENTS clients, DIST
# affiliates), then off. For each shape, per accepted order: how many, the
# server's time (ms; a wait for an InnoDB row lock is in it), Lock_time (ms;
# table locks, not row locks), rows examined, pages accessed and pages read
# from disk.
# Run it on an empty database and on one with history (the same build, the
# same settings) and the shapes whose cost grows with history stand out.
# The log holds every statement of the server while it is on, other
# databases' too: run it on a quiet server. The per-key limit is off (serve.sh).
#   loadtest/statement-times.sh LABEL      (release build first)
# LABEL `empty`: a fresh database (serve.sh's setup); any other label: the
# existing database KOMISI_BENCH_DB (e.g. seed_10m), warmed first
# (loadtest/warm.sh) as history.sh does.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LABEL=${1:?label: empty, or what the database holds}
SECS=${SECS:-8}
CLIENTS=${CLIENTS:-128}
DIST=${DIST:-uniform}
NAME=${KOMISI_BENCH_DB:-komisi_perf}
LT=./target/release/loadtest
loadtest/mariadb-tune.sh "${KOMISI_BENCH_BUFFER_POOL_MB:-8192}"
# The slow log's settings (on, long_query_time, log_slow_verbosity) are
# copied into a session when it connects: all set before the server opens
# its pools, the log going to a scratch file except during the measured run.
saved=$(mariadb -uroot -h127.0.0.1 -N -e "SELECT CONCAT(@@long_query_time, ' ', @@slow_query_log_file, ' ', @@log_slow_verbosity)")
read -r saved_time saved_file saved_verbosity <<<"$saved"
restore() {
  mariadb -uroot -h127.0.0.1 -e "SET GLOBAL slow_query_log = 0; SET GLOBAL long_query_time = $saved_time; \
    SET GLOBAL slow_query_log_file = '$saved_file'; SET GLOBAL log_slow_verbosity = '${saved_verbosity:-}'" || true
  rm -f "${scratch:-}"
}
trap restore EXIT
scratch=$(mktemp -u /tmp/komisi-slow-scratch.XXXXXX)
mariadb -uroot -h127.0.0.1 -e "SET GLOBAL slow_query_log_file = '$scratch'; SET GLOBAL long_query_time = 0; \
  SET GLOBAL log_slow_verbosity = 'innodb'; SET GLOBAL slow_query_log = 1"
if [ "$LABEL" = empty ]; then
  PID=$(KOMISI_RECONCILE_EVERY_MS=0 loadtest/serve.sh)
else
  loadtest/warm.sh "$NAME"
  PID=$(KOMISI_BENCH_KEEP_DB=1 KOMISI_RECONCILE_EVERY_MS=0 loadtest/serve.sh)
fi
# A short run first: the server's pools, prepared statements and the pages
# its first minutes touch are in place before the logged run.
$LT run --base-url http://127.0.0.1:18090 --clients "$CLIENTS" --duration-secs 4 --affiliates-dist "$DIST" --server-pid "$PID" >/dev/null
log=$(mktemp -u /tmp/komisi-slow.XXXXXX)
mariadb -uroot -h127.0.0.1 -e "SET GLOBAL slow_query_log_file = '$log'"
out=$($LT run --base-url http://127.0.0.1:18090 --clients "$CLIENTS" --duration-secs "$SECS" --affiliates-dist "$DIST" --server-pid "$PID")
mariadb -uroot -h127.0.0.1 -e "SET GLOBAL slow_query_log_file = '$scratch'"
kill "$PID"
while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
restore
trap - EXIT
rm -f "$scratch"
orders=$(echo "$out" | python3 -c "import json,sys; print(json.load(sys.stdin)['orders_accepted'])")
echo "== $LABEL ($NAME): $orders orders in ${SECS} s at saturation, $DIST; per order, by shape:"
python3 - "$log" "$orders" "$NAME" <<'EOF'
import collections, re, sys
path, orders, schema = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# shape -> [count, seconds, lock seconds, rows examined, pages accessed, pages read]
shapes = collections.defaultdict(lambda: [0, 0.0, 0.0, 0, 0, 0])
head, ours = {}, False
def field(name, line, cast):
    m = re.search(name + r":\s*([\d.]+)", line)
    return cast(m.group(1)) if m else 0
for line in open(path, errors="replace"):
    if line.startswith("# Thread_id"):
        head, ours = {}, ("Schema: " + schema + " ") in line + " "
    elif line.startswith("# Query_time"):
        head["t"] = field("Query_time", line, float)
        head["lock"] = field("Lock_time", line, float)
        head["rows"] = field("Rows_examined", line, int)
    elif line.startswith("# Pages_accessed"):
        head["acc"] = field("Pages_accessed", line, int)
        head["read"] = field("Pages_read", line, int)
    elif line.startswith("#") or line.startswith("SET timestamp") or line.startswith("use "):
        continue
    elif ours and "t" in head and line.strip():
        text = re.sub(r"_utf8mb4 X'[0-9A-Fa-f]*'|X'[0-9A-Fa-f]*'|'[^']*'|\b\d+(\.\d+)?\b", "?", line.strip())
        text = re.sub(r"\(\?(, \?)*\)", "(…)", re.sub(r"\s+", " ", text))
        s = shapes[text[:90]]
        for i, v in enumerate([1, head["t"], head["lock"], head["rows"], head.get("acc", 0), head.get("read", 0)]):
            s[i] += v
        head = {}
def row(v, name):
    print(f"{v[0] / orders:7.3f} {v[1] * 1000 / orders:7.3f} {v[2] * 1000 / orders:7.3f} {v[3] / orders:8.1f} "
          f"{v[4] / orders:8.1f} {v[5] / orders:7.3f}  {name}")
print(f"{'n':>7} {'ms':>7} {'lock ms':>7} {'rows':>8} {'pages':>8} {'read':>7}  shape")
for shape, v in sorted(shapes.items(), key=lambda kv: -kv[1][1])[:25]:
    row(v, shape)
row([sum(v[i] for v in shapes.values()) for i in range(6)], "in all")
EOF
[ -n "${KEEP_LOG:-}" ] || rm -f "$log"
