#!/usr/bin/env bash
# Sets MariaDB's InnoDB buffer pool (a dynamic setting, kept until MariaDB
# restarts) so that the benchmark's data fits in memory, for the baseline and
# komisi alike; prints the size in effect.
#   loadtest/buffer-pool.sh <megabytes>
set -euo pipefail
MB=${1:?megabytes}
mariadb -uroot -h127.0.0.1 -e "SET GLOBAL innodb_buffer_pool_size = $((MB * 1024 * 1024))"
for _ in $(seq 1 100); do
  status=$(mariadb -uroot -h127.0.0.1 -N -e "SHOW STATUS LIKE 'Innodb_buffer_pool_resize_status'" | cut -f2)
  case "$status" in *Completed*|"") break ;; esac
  sleep 0.2
done
echo "# innodb_buffer_pool_size = $(mariadb -uroot -h127.0.0.1 -N -e 'SELECT @@innodb_buffer_pool_size DIV 1048576') MB" >&2
