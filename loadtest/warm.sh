#!/usr/bin/env bash
# Brings a seeded database to the state of a server that has been running:
#   1. waits until InnoDB has written out the seed's dirty pages, down to 1 %
#      of the pool (at most WARM_MAX_WAIT seconds, default 900), so the runs
#      do not share the disk with the seed's flushing;
#   2. reads into the buffer pool the indexes the order path reaches at
#      random — keyed by buyer or affiliate, so a new order's row or entry
#      lands on any of their pages — and the small tables whole.
# A running komisi keeps those pages in the pool because every order reads
# or writes one of them; MariaDB keeps them across its own restarts too
# (innodb_buffer_pool_dump_at_shutdown and _load_at_startup, on by default).
# A seed written with LOAD DATA and index builds leaves the pool holding
# whatever the builds read last instead, and the first minutes of load then
# read those pages one by one from disk while holding row locks.
#   loadtest/warm.sh DATABASE
set -euo pipefail
DB=${1:?database}
sql() { mariadb -uroot -h127.0.0.1 -N "$DB" -e "$1"; }
status() { sql "SHOW GLOBAL STATUS LIKE '$1'" | cut -f2; }
started=$(date +%s)
# An idle InnoDB leaves dirty pages where they are; a limit of 0 % makes the
# page cleaner write them all out now (the limit is put back after).
limit=$(sql "SELECT @@innodb_max_dirty_pages_pct")
sql "SET GLOBAL innodb_max_dirty_pages_pct = 0"
trap 'sql "SET GLOBAL innodb_max_dirty_pages_pct = $limit"' EXIT
until [ "$(status Innodb_buffer_pool_pages_dirty)" -lt $(($(status Innodb_buffer_pool_pages_total) / 100)) ] || [ $(($(date +%s) - started)) -ge "${WARM_MAX_WAIT:-900}" ]; do
  sleep 2
done
sql "SET GLOBAL innodb_max_dirty_pages_pct = $limit"
trap - EXIT
echo "# warm: $(status Innodb_buffer_pool_pages_dirty) dirty pages after $(($(date +%s) - started)) s" >&2
reads=$(status Innodb_buffer_pool_reads)
t0=$(date +%s)
# table:index (PRIMARY: the table's rows).
for ti in orders:ix_orders_buyer_placed orders:ix_orders_affiliate_placed \
  reward_entries:ix_reward_buyer buyers:PRIMARY customer_links:PRIMARY \
  ledger_entries:ix_ledger_unbatched ledger_entries:ix_ledger_payout \
  affiliates:PRIMARY affiliate_months:PRIMARY cap_counters:PRIMARY report_affiliate_days:PRIMARY; do
  table=${ti%%:*}
  index=${ti#*:}
  sql "SELECT COUNT(*) FROM $table FORCE INDEX ($index)" >/dev/null
done
# The ledger by affiliate: before migration 0039 the index (read whole);
# since, the table itself is keyed (affiliate, id), and what the order path
# reaches is each affiliate's last page, where its next entry goes.
if [ "$(sql "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = '$DB' AND table_name = 'ledger_entries' AND index_name = 'ix_ledger_affiliate'")" -gt 0 ]; then
  sql "SELECT COUNT(*) FROM ledger_entries FORCE INDEX (ix_ledger_affiliate)" >/dev/null
else
  sql "SELECT COUNT((SELECT l.id FROM ledger_entries l WHERE l.affiliate_id = a.id ORDER BY l.id DESC LIMIT 1)) FROM affiliates a" >/dev/null
fi
echo "# warm: $(($(status Innodb_buffer_pool_reads) - reads)) pages read in $(($(date +%s) - t0)) s" >&2
