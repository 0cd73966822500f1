#!/usr/bin/env bash
# Memory over a long run: 100 000 affiliates, about 1 000 000 orders (plus the
# refund/completion mix) at a steady rate; reports komisi's peak RSS (VmHWM).
#   loadtest/soak.sh [rate] [seconds]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RATE=${1:-600}
SECS=${2:-1950}
cargo build --release -q -p komisi -p loadtest
PID=$(KOMISI_BENCH_AFFILIATES=100000 loadtest/serve.sh)
./target/release/loadtest run --base-url http://127.0.0.1:18090 --affiliates 100000 --rate "$RATE" \
  --duration-secs "$SECS" --drain-timeout-secs 600 --server-pid "$PID"
kill "$PID"
