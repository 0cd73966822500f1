#!/bin/bash
# Samples a running soak every 30 s: RSS, accepted vs applied, open events
# (counters and the database), live actors, re-journaled events.
#   loadtest/sample.sh > samples.txt   (while loadtest/soak.sh runs)
for i in $(seq 1 200); do
  P=$(pgrep -f "komisi serve --bind 127.0.0.1:18090"); [ -z "$P" ] && break
  R=$(grep VmRSS /proc/$P/status | awk '{print $2/1024}')
  M=$(curl -s -m 5 http://127.0.0.1:18090/metrics)
  acc=$(echo "$M" | grep '^komisi_http_requests_total' | grep 'status="202"' | awk '{s+=$2} END {print s}')
  done_=$(echo "$M" | grep '^komisi_events_total' | grep 'outcome="done"' | awk '{s+=$2} END {print s}')
  noop=$(echo "$M" | grep '^komisi_events_total' | grep 'outcome="noop"' | awk '{s+=$2} END {print s}')
  act=$(echo "$M" | grep '^komisi_actors_active' | awk '{print $2}')
  rej=$(echo "$M" | grep '^komisi_events_rejournaled_total' | awk '{print $2}')
  gauge=$(echo "$M" | grep '^komisi_events_pending' | awk '{print $2}')
  db=$(mariadb -uroot -h127.0.0.1 -N -e "select count(*) from komisi_perf.events where status <> 'done'")
  echo "$(date +%T) rss_mb=$R accepted=$acc done=$done_ noop=$noop counter_backlog=$((acc-done_)) db_open=$db gauge=$gauge actors=$act rejournaled=$rej"
  sleep 30
done
