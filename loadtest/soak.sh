#!/usr/bin/env bash
# Memory over a long run: 100 000 affiliates, about 1 000 000 orders (plus the
# refund/completion mix) at a steady rate; reports komisi's peak RSS (VmHWM).
#   loadtest/soak.sh [rate] [seconds]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RATE=${1:-1000}
SECS=${2:-1180}
cargo build --release -q -p komisi -p loadtest
# ~1 000 000 orders are ~5 GB of rows and indexes: give InnoDB a buffer pool
# that holds them (MariaDB's default 128 MB makes every run disk-bound).
loadtest/mariadb-tune.sh "${KOMISI_BENCH_BUFFER_POOL_MB:-8192}"
PID=$(KOMISI_BENCH_AFFILIATES=100000 loadtest/serve.sh)
./target/release/loadtest run --base-url http://127.0.0.1:18090 --affiliates 100000 --rate "$RATE" \
  --duration-secs "$SECS" --drain-timeout-secs 600 --server-pid "$PID"
kill "$PID"
