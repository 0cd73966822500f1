#!/usr/bin/env bash
# Statements per order, by shape, for each build DIR: MariaDB's general log
# (switched on for the run only, then off) over a closed-loop run of SECS
# seconds with CLIENTS clients, uniform. Unlike a rate, a count of statements
# does not move with the machine's noise: two builds compared this way show
# where one sends more work to the database (more transactions, smaller
# batches, an extra statement) even when their rates are lost in the noise.
# The log holds every statement of the server while it is on, other
# databases' too: run it on a quiet server.
#   loadtest/statements.sh DIR...     (each DIR built: cargo build --release -p komisi -p loadtest)
set -euo pipefail
SECS=${SECS:-5}
CLIENTS=${CLIENTS:-128}
LT=${KOMISI_AB_LOADTEST:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/release/loadtest}
for dir in "$@"; do
  PID=$(cd "$dir" && loadtest/serve.sh 2>/dev/null)
  log=$(mktemp -u /tmp/komisi-statements.XXXXXX)
  mariadb -uroot -h127.0.0.1 -e "SET GLOBAL general_log_file = '$log'; SET GLOBAL general_log = 1"
  out=$($LT run --base-url http://127.0.0.1:18090 --clients "$CLIENTS" --duration-secs "$SECS" --server-pid "$PID")
  mariadb -uroot -h127.0.0.1 -e "SET GLOBAL general_log = 0"
  kill "$PID"
  while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
  orders=$(echo "$out" | python3 -c "import json,sys; print(json.load(sys.stdin)['orders_accepted'])")
  echo "== $dir: $orders orders in ${SECS} s at saturation; statements per order, by shape"
  python3 - "$log" "$orders" <<'EOF'
import collections, re, sys
path, orders = sys.argv[1], int(sys.argv[2])
shapes = collections.Counter()
for line in open(path, errors="replace"):
    m = re.match(r"^(?:\d{6}\s+[\d:]+\s+)?\s*\d+\s+(Query|Execute)\s*(.*)$", line)
    if not m:
        continue
    text = re.sub(r"_utf8mb4 X'[0-9A-Fa-f]*'|X'[0-9A-Fa-f]*'|'[^']*'|\b\d+(\.\d+)?\b", "?", m.group(2).strip())
    shapes[re.sub(r"\s+", " ", text)[:100]] += 1
for shape, n in shapes.most_common(30):
    print(f"{n / orders:7.3f}  {shape}")
print(f"{sum(shapes.values()) / orders:7.3f}  in all")
EOF
  rm -f "$log"
done
