#!/usr/bin/env bash
# Sizes MariaDB for the benchmark's data, for the baseline and komisi alike
# (dynamic settings, kept until MariaDB restarts), and prints them:
#   - the InnoDB buffer pool, so the rows and indexes stay in memory;
#   - the redo log (1 GB) and io capacity (2000): with Debian's 96 MB log and
#     io capacity 200 the log fills within seconds at these write rates and
#     InnoDB stalls every commit while it flushes ("checkpoint age" at max).
# Commits stay durable (innodb_flush_log_at_trx_commit is left at 1).
#   loadtest/mariadb-tune.sh <buffer pool megabytes>
set -euo pipefail
MB=${1:?buffer pool megabytes}
sql() { mariadb -uroot -h127.0.0.1 -N -e "$1"; }
sql "SET GLOBAL innodb_buffer_pool_size = $((MB * 1024 * 1024))"
sql "SET GLOBAL innodb_log_file_size = $((1024 * 1024 * 1024))"
sql "SET GLOBAL innodb_io_capacity = 2000"
for _ in $(seq 1 100); do
  status=$(sql "SHOW STATUS LIKE 'Innodb_buffer_pool_resize_status'" | cut -f2)
  case "$status" in *Completed*|"") break ;; esac
  sleep 0.2
done
echo "# MariaDB: $(sql "SELECT CONCAT('innodb_buffer_pool_size=', @@innodb_buffer_pool_size DIV 1048576, 'M innodb_log_file_size=', @@innodb_log_file_size DIV 1048576, 'M innodb_io_capacity=', @@innodb_io_capacity, ' innodb_flush_log_at_trx_commit=', @@innodb_flush_log_at_trx_commit)")" >&2
