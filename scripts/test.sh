#!/usr/bin/env bash
# The one test command, on any machine (including a fresh Debian 12 with nothing
# running):
#
#   scripts/test.sh                    fmt, clippy, the whole test suite, benchmarks once
#   scripts/test.sh -- worked_example  extra arguments go to `cargo test --workspace`
#
# The integration suite (tests/api) runs twice: on MySQL + Redis (with the
# rest of the workspace's tests) and on the embedded SQLite backend.
# KOMISI_TEST_BACKEND=mysql or =sqlite runs the whole workspace once, on that
# backend only.
#
# MariaDB / Redis: a server given by KOMISI_TEST_MYSQL_URL / KOMISI_TEST_REDIS_URL
# is used as is. Otherwise the default local address (127.0.0.1:3306 as root
# without password, 127.0.0.1:6379) is used when it answers; if it does not, a
# throwaway instance is started on a free port from the installed binaries
# (installing the Debian packages first when missing and running as root) and
# stopped and deleted again when the script exits. Databases `komisi_t_%` and
# Redis keys of prefixes `komisi_t_*` left over from earlier runs are removed
# before testing.
#
# Redis Cluster: the journal tests and an end-to-end multi-instance test also
# run on a cluster, KOMISI_TEST_REDIS_CLUSTER_URL (comma-separated node URLs)
# when given, else a throwaway 3-master cluster started from the installed
# redis-server on free ports below 55 000 (a node's cluster bus is its port
# + 10 000) and stopped when the script exits; either way the cluster tests
# are required to run (KOMISI_TEST_REQUIRE_CLUSTER=1).
#
# The console's browser test needs chromium (installed with apt-get when
# missing), node 20+ and playwright-core (`npm ci` in tests/console when
# missing); the script requires it to run (KOMISI_TEST_REQUIRE_BROWSER=1).
#
# The webhook tests verify every delivery with tests/webhooks/receiver.mjs:
# node 20+ and the npm package standardwebhooks (`npm ci` in tests/webhooks
# when missing).
#
# The integrator's contract (tests/client, with the contract run): redocly
# lint of the served OpenAPI document, a TypeScript client generated from it
# (openapi-typescript + openapi-fetch), type-checked and run through the
# worked example: node 20+ and `npm ci` in tests/client when missing.
#
# Skips: no test may skip here for want of something this script provides.
# Each one this script needs (MariaDB, Redis, the cluster, chromium, node,
# playwright-core, standardwebhooks, the client's npm packages, the chaos
# run's mariadbd, schemathesis,
# cargo-deny) is provided or the script stops with an error saying what is
# missing, and the tests that would otherwise skip are required
# (KOMISI_TEST_REQUIRE_CLUSTER, KOMISI_TEST_REQUIRE_BROWSER: a skip becomes a
# failure). The only skips left are by design, each printing `<test>:
# skipped …(why)`: tests of Redis or MySQL itself in the sqlite run (the
# mysql run has them; KOMISI_TEST_BACKEND=sqlite leaves them out on purpose),
# and the `#[ignore]`d chaos test, which this script runs itself (unless test
# names are given).
#
# Switches (environment):
#   KOMISI_TEST_QUICK=1             skip cargo fmt and cargo clippy
#   KOMISI_TEST_PROVISION_ONLY=1    provision, print the URLs, check CREATE/DROP
#                                   DATABASE and Redis SET/GET, then exit (and
#                                   stop any throwaway servers)
#   KOMISI_TEST_FORCE_THROWAWAY=1   do not use servers at the default addresses;
#                                   start throwaway ones (for testing this script)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  --) shift ;;
esac
TEST_ARGS=("$@")

log() { printf '== %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}
# A switch is on when set to anything but "" or "0".
on() { [ -n "${1:-}" ] && [ "$1" != 0 ]; }

# ---------------------------------------------------------------- cleanup

TMP_ROOT=""
MARIADB_PID=""
REDIS_PID=""
REDIS_PORT=""
CLUSTER_PORTS=()
KOMISI_PID=""
POLICY_RC_CREATED=""

# True while $1 is a running (not zombie) process.
alive() {
  local stat
  if [ -r "/proc/$1/stat" ]; then
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
  else
    kill -0 "$1" 2>/dev/null
  fi
}

# stop_pid PID SECONDS: SIGTERM, wait up to SECONDS, then SIGKILL.
stop_pid() {
  local pid=$1 end=$((SECONDS + $2))
  kill -TERM "$pid" 2>/dev/null || true
  while alive "$pid" && [ "$SECONDS" -lt "$end" ]; do sleep 0.2; done
  if alive "$pid"; then
    warn "pid $pid did not stop in $2 s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  wait "$pid" 2>/dev/null || true # reap it when it is our child
}

cleanup() {
  local rc=$?
  set +e
  trap '' HUP INT TERM # a second Ctrl-C must not cut the cleanup short
  if [ -n "$KOMISI_PID" ]; then stop_pid "$KOMISI_PID" 20; fi
  if [ -n "$MARIADB_PID" ]; then
    log "stopping throwaway MariaDB (pid $MARIADB_PID)"
    stop_pid "$MARIADB_PID" 60
  fi
  if [ -n "$REDIS_PID" ]; then
    log "stopping throwaway Redis (pid $REDIS_PID)"
    stop_pid "$REDIS_PID" 20
  elif [ -n "$REDIS_PORT" ]; then
    timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1
  fi
  if [ "${#CLUSTER_PORTS[@]}" -gt 0 ]; then
    log "stopping the throwaway Redis Cluster (ports ${CLUSTER_PORTS[*]})"
    for p in "${CLUSTER_PORTS[@]}"; do
      timeout 10 redis-cli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1
    done
  fi
  if [ -n "$POLICY_RC_CREATED" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ -n "$TMP_ROOT" ]; then rm -rf "$TMP_ROOT"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

tmp_root() {
  if [ -z "$TMP_ROOT" ]; then TMP_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/komisi-test.XXXXXX"); fi
}

# ---------------------------------------------------------------- packages

can_apt() { [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; }

APT_UPDATED=""
apt_install() {
  can_apt || die "$* needed but cannot be installed here (needs root and apt-get); install it, or point KOMISI_TEST_MYSQL_URL / KOMISI_TEST_REDIS_URL at running servers"
  log "installing $* (apt-get)"
  if [ -z "$APT_UPDATED" ]; then
    apt-get update || die "apt-get update failed (no network or no package mirror?); needed to install $*"
    APT_UPDATED=1
  fi
  # Only the binaries are wanted: keep the packages' maintainer scripts from
  # starting the system services (there is no systemd; they would use init.d).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" || die "apt-get install $* failed (output above)"
  if [ -n "$POLICY_RC_CREATED" ]; then
    rm -f /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=""
  fi
}

# ---------------------------------------------------------------- helpers

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# First port from $1 on that nothing listens on.
free_port() {
  local p
  for ((p = $1; p < $1 + 500; p++)); do
    if ! port_open "$p"; then
      echo "$p"
      return
    fi
  done
  die "no free port in $1..$(($1 + 499))"
}

# Password shown as *** for printing.
mask_url() { sed -E 's#^([a-z]+://[^:@/]*):[^@]*@#\1:***@#' <<<"$1"; }

url_decode() { printf '%b' "${1//%/\\x}"; }

mysql_client() { command -v mariadb || command -v mysql || true; }

find_mariadbd() {
  local c
  for c in mariadbd /usr/sbin/mariadbd /usr/libexec/mariadbd mysqld /usr/sbin/mysqld; do
    if command -v "$c" >/dev/null 2>&1; then
      command -v "$c"
      return
    fi
  done
}

find_install_db() {
  command -v mariadb-install-db || command -v mysql_install_db || true
}

# ---------------------------------------------------------------- MariaDB

MYSQL_SOURCE=""

# True when root without password answers over TCP on 127.0.0.1:$1 (without a
# client: when the port is open).
mariadb_answers() {
  local client
  client=$(mysql_client)
  if [ -n "$client" ]; then
    "$client" --no-defaults --protocol=TCP -h127.0.0.1 -P"$1" -uroot --connect-timeout=5 \
      -e 'SELECT 1' >/dev/null 2>&1
  else
    port_open "$1"
  fi
}

# start_mariadb DIR PORT: 0 = up (MARIADB_PID set), 2 = port taken, else fatal.
start_mariadb() {
  local dir=$1 port=$2 server install_db client i
  local user_opt=()
  server=$(find_mariadbd)
  install_db=$(find_install_db)
  client=$(mysql_client)
  if [ "$(id -u)" -eq 0 ]; then user_opt=(--user=root); fi
  rm -rf "$dir"
  mkdir -p "$dir/data"
  "$install_db" --no-defaults "${user_opt[@]}" --datadir="$dir/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 ||
    {
      cat "$dir/install.log" >&2
      die "mariadb-install-db failed"
    }
  # Character set as Debian's packaged server configures it.
  "$server" --no-defaults "${user_opt[@]}" --datadir="$dir/data" --socket="$dir/mysqld.sock" \
    --pid-file="$dir/mysqld.pid" --log-error="$dir/error.log" \
    --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --max-connections=1000 --innodb-flush-log-at-trx-commit=2 >"$dir/stdout.log" 2>&1 &
  MARIADB_PID=$!
  # Ready = answers on our own socket (not on the port, which a concurrent run
  # might have taken in the meantime).
  for ((i = 0; i < 600; i++)); do
    if ! alive "$MARIADB_PID"; then
      wait "$MARIADB_PID" 2>/dev/null || true
      MARIADB_PID=""
      if grep -qiE 'address already in use|Do you already have another .*server running' "$dir/error.log" 2>/dev/null; then
        return 2
      fi
      cat "$dir/error.log" "$dir/stdout.log" >&2 2>/dev/null || true
      die "throwaway MariaDB exited during start-up (log above)"
    fi
    if [ -n "$client" ]; then
      if "$client" --no-defaults --socket="$dir/mysqld.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1; then return 0; fi
    elif [ -S "$dir/mysqld.sock" ] && port_open "$port"; then
      return 0
    fi
    sleep 0.1
  done
  cat "$dir/error.log" >&2 2>/dev/null || true
  die "throwaway MariaDB did not answer within 60 s (log above)"
}

provision_mariadb() {
  # The client checks the server and cleans leftovers; without it (and no way
  # to install it) a plain TCP check has to do.
  if [ -z "$(mysql_client)" ] && can_apt; then apt_install mariadb-client; fi
  if [ -n "${KOMISI_TEST_MYSQL_URL:-}" ]; then
    MYSQL_SOURCE="from KOMISI_TEST_MYSQL_URL"
    return
  fi
  if ! on "${KOMISI_TEST_FORCE_THROWAWAY:-}" && mariadb_answers 3306; then
    export KOMISI_TEST_MYSQL_URL="mysql://root@127.0.0.1:3306"
    MYSQL_SOURCE="already running at the default address"
    return
  fi
  if [ -z "$(find_mariadbd)" ] || [ -z "$(find_install_db)" ]; then apt_install mariadb-server; fi
  [ -n "$(find_mariadbd)" ] || die "no mariadbd binary found"
  [ -n "$(find_install_db)" ] || die "no mariadb-install-db found"
  tmp_root
  local port attempt rc
  for attempt in 1 2 3; do
    port=$(free_port 33061)
    log "starting a throwaway MariaDB on 127.0.0.1:$port"
    rc=0
    start_mariadb "$TMP_ROOT/mariadb" "$port" || rc=$?
    if [ "$rc" -eq 0 ]; then
      export KOMISI_TEST_MYSQL_URL="mysql://root@127.0.0.1:$port"
      MYSQL_SOURCE="throwaway, pid $MARIADB_PID, data in $TMP_ROOT/mariadb"
      return
    fi
    warn "port $port was taken meanwhile (attempt $attempt), trying another"
  done
  die "could not start a throwaway MariaDB"
}

# Connection parameters of KOMISI_TEST_MYSQL_URL, for the command-line client.
MY_USER="" MY_PASS="" MY_HOST="" MY_PORT=""
parse_mysql_url() {
  local rest=${1#*://} userinfo="" hostport
  if [[ $rest == *@* ]]; then
    userinfo=${rest%@*}
    rest=${rest##*@}
  fi
  hostport=${rest%%[/?]*}
  MY_USER=$(url_decode "${userinfo%%:*}")
  MY_PASS=""
  if [[ $userinfo == *:* ]]; then MY_PASS=$(url_decode "${userinfo#*:}"); fi
  if [[ $hostport == \[* ]]; then
    MY_HOST=${hostport%%]*}
    MY_HOST=${MY_HOST#[}
    rest=${hostport#*]}
    MY_PORT=${rest#:}
  else
    MY_HOST=${hostport%%:*}
    MY_PORT=""
    if [[ $hostport == *:* ]]; then MY_PORT=${hostport##*:}; fi
  fi
  MY_USER=${MY_USER:-root}
  MY_HOST=${MY_HOST:-127.0.0.1}
  MY_PORT=${MY_PORT:-3306}
}

# sql STATEMENTS: run against KOMISI_TEST_MYSQL_URL, tab-separated output.
sql() {
  local client envs=()
  client=$(mysql_client)
  if [ -n "$MY_PASS" ]; then envs=("MYSQL_PWD=$MY_PASS"); fi
  env "${envs[@]}" "$client" --no-defaults --protocol=TCP -h"$MY_HOST" -P"$MY_PORT" -u"$MY_USER" \
    --connect-timeout=10 -N -B -e "$1"
}

# ---------------------------------------------------------------- Redis

REDIS_SOURCE=""

# PING over plain bash when redis-cli is missing.
redis_ping_tcp() {
  local reply=""
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  IFS= read -r -t 3 reply <&3 || true
  exec 3<&- 3>&-
  [ "${reply%$'\r'}" = "+PONG" ]
}

redis_answers() { # port
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
  else
    redis_ping_tcp "$1"
  fi
}

# start_redis DIR PORT: 0 = up (REDIS_PID set), 2 = port taken, else fatal.
start_redis() {
  local dir=$1 port=$2 i
  rm -rf "$dir"
  mkdir -p "$dir"
  REDIS_PORT=$port
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --unixsocket "$dir/redis.sock" --unixsocketperm 700 >"$dir/stdout.log" 2>&1 ||
    {
      cat "$dir/stdout.log" "$dir/redis.log" >&2 2>/dev/null || true
      REDIS_PORT=""
      die "redis-server failed to start (log above)"
    }
  # Ready = answers on our own socket and has written its pid file.
  for ((i = 0; i < 200; i++)); do
    if [ -s "$dir/redis.pid" ] && [ -z "$REDIS_PID" ]; then REDIS_PID=$(cat "$dir/redis.pid"); fi
    if [ -n "$REDIS_PID" ] && [ "$(timeout 5 redis-cli -s "$dir/redis.sock" ping 2>/dev/null)" = PONG ]; then
      return 0
    fi
    if grep -qiE 'address already in use' "$dir/redis.log" 2>/dev/null; then
      if [ -n "$REDIS_PID" ]; then stop_pid "$REDIS_PID" 10; fi
      REDIS_PID=""
      REDIS_PORT=""
      return 2
    fi
    if [ -n "$REDIS_PID" ] && ! alive "$REDIS_PID"; then break; fi
    sleep 0.1
  done
  cat "$dir/redis.log" >&2 2>/dev/null || true
  die "throwaway Redis did not come up within 20 s (log above)"
}

provision_redis() {
  if ! command -v redis-cli >/dev/null 2>&1 && can_apt; then apt_install redis-tools; fi
  if [ -n "${KOMISI_TEST_REDIS_URL:-}" ]; then
    REDIS_SOURCE="from KOMISI_TEST_REDIS_URL"
    return
  fi
  if ! on "${KOMISI_TEST_FORCE_THROWAWAY:-}" && redis_answers 6379; then
    export KOMISI_TEST_REDIS_URL="redis://127.0.0.1:6379"
    REDIS_SOURCE="already running at the default address"
    return
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server redis-tools
  fi
  tmp_root
  local port attempt rc
  for attempt in 1 2 3; do
    port=$(free_port 63791)
    log "starting a throwaway Redis on 127.0.0.1:$port"
    rc=0
    start_redis "$TMP_ROOT/redis" "$port" || rc=$?
    if [ "$rc" -eq 0 ]; then
      export KOMISI_TEST_REDIS_URL="redis://127.0.0.1:$port"
      REDIS_SOURCE="throwaway, pid $REDIS_PID"
      return
    fi
    warn "port $port was taken meanwhile (attempt $attempt), trying another"
  done
  die "could not start a throwaway Redis"
}

# A throwaway 3-master Redis Cluster (no replicas) unless
# KOMISI_TEST_REDIS_CLUSTER_URL names one.
provision_redis_cluster() {
  export KOMISI_TEST_REQUIRE_CLUSTER=1
  if [ -n "${KOMISI_TEST_REDIS_CLUSTER_URL:-}" ]; then
    CLUSTER_SOURCE="from KOMISI_TEST_REDIS_CLUSTER_URL"
    return
  fi
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    apt_install redis-server redis-tools
  fi
  tmp_root
  local p=47001 port nodes=() urls="" i dir ok
  while [ "${#CLUSTER_PORTS[@]}" -lt 3 ]; do
    [ "$p" -lt 47500 ] || die "no free ports for a Redis Cluster in 47001..47499"
    port=$p
    p=$((p + 1))
    if port_open "$port" || port_open $((port + 10000)); then continue; fi
    dir="$TMP_ROOT/cluster-$port"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 5000 \
      --save "" --appendonly no --daemonize yes --dir "$dir" \
      --logfile "$dir/redis.log" >"$dir/stdout.log" 2>&1 || {
      cat "$dir/stdout.log" "$dir/redis.log" >&2 2>/dev/null || true
      die "redis-server (cluster node $port) failed to start"
    }
    CLUSTER_PORTS+=("$port")
  done
  for port in "${CLUSTER_PORTS[@]}"; do
    for ((i = 0; i < 100; i++)); do
      [ "$(timeout 5 redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
      sleep 0.1
    done
    nodes+=("127.0.0.1:$port")
    urls+="${urls:+,}redis://127.0.0.1:$port"
  done
  log "creating a throwaway Redis Cluster on ${nodes[*]}"
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$TMP_ROOT/cluster-create.log" 2>&1 || {
    cat "$TMP_ROOT/cluster-create.log" >&2
    die "redis-cli --cluster create failed"
  }
  for ((i = 0; i < 200; i++)); do
    ok=1
    for port in "${CLUSTER_PORTS[@]}"; do
      timeout 5 redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || ok=""
    done
    [ -n "$ok" ] && break
    sleep 0.1
  done
  [ -n "$ok" ] || die "the throwaway Redis Cluster did not reach cluster_state:ok in 20 s"
  export KOMISI_TEST_REDIS_CLUSTER_URL="$urls"
  CLUSTER_SOURCE="throwaway, 3 masters"
}

# Connection parameters of KOMISI_TEST_REDIS_URL for redis-cli, read as the
# Rust client reads them (redis-cli's own -u fails on redis://:password@host).
RD_ARGS=() RD_PASS=""
parse_redis_url() {
  local rest=${1#*://} userinfo="" hostport db host port user
  RD_ARGS=()
  RD_PASS=""
  if [[ $1 == rediss://* ]]; then RD_ARGS+=(--tls); fi
  if [[ $rest == *@* ]]; then
    userinfo=${rest%@*}
    rest=${rest##*@}
  fi
  hostport=${rest%%[/?]*}
  db=""
  if [[ $rest == */* ]]; then
    db=${rest#*/}
    db=${db%%[/?]*}
  fi
  if [[ $hostport == \[* ]]; then
    host=${hostport%%]*}
    host=${host#[}
    port=${hostport#*]}
    port=${port#:}
  else
    host=${hostport%%:*}
    port=""
    if [[ $hostport == *:* ]]; then port=${hostport##*:}; fi
  fi
  RD_ARGS+=(-h "${host:-127.0.0.1}" -p "${port:-6379}")
  if [ -n "$db" ]; then RD_ARGS+=(-n "$db"); fi
  user=$(url_decode "${userinfo%%:*}")
  if [[ $userinfo == *:* ]]; then
    RD_PASS=$(url_decode "${userinfo#*:}")
    if [ -n "$user" ]; then RD_ARGS+=(--user "$user"); fi
  fi
}

rcli() {
  if [ -n "$RD_PASS" ]; then
    REDISCLI_AUTH="$RD_PASS" redis-cli --no-auth-warning "${RD_ARGS[@]}" "$@"
  else
    redis-cli "${RD_ARGS[@]}" "$@"
  fi
}

# ---------------------------------------------------------------- leftovers and probe

clean_leftovers() {
  local dbs stmt="" db keys
  if [ -n "$(mysql_client)" ]; then
    if dbs=$(sql "SHOW DATABASES LIKE 'komisi\\_t\\_%'"); then
      for db in $dbs; do stmt+="DROP DATABASE IF EXISTS \`$db\`; "; done
      if [ -n "$stmt" ]; then
        sql "$stmt" || warn "could not drop all leftover test databases"
      fi
      log "dropped $(wc -w <<<"$dbs") leftover komisi_t_% database(s)"
    else
      warn "could not list leftover test databases"
    fi
  else
    warn "no mariadb/mysql client: leftover test databases not cleaned"
  fi
  if command -v redis-cli >/dev/null 2>&1; then
    if keys=$(rcli --scan --pattern '*komisi_t_*'); then
      if [ -n "$keys" ]; then
        (
          if [ -n "$RD_PASS" ]; then export REDISCLI_AUTH="$RD_PASS"; fi
          xargs -r -d '\n' -n 500 redis-cli --no-auth-warning "${RD_ARGS[@]}" DEL <<<"$keys" >/dev/null
        ) || warn "could not delete all leftover Redis keys"
      fi
      log "deleted $(grep -c . <<<"$keys" || true) leftover komisi_t_* Redis key(s)"
    else
      warn "could not scan leftover Redis keys"
    fi
  else
    warn "no redis-cli: leftover Redis keys not cleaned"
  fi
}

# Fail early, with a clear message, when the servers cannot do what the tests need.
probe() {
  local v
  if [ -n "$(mysql_client)" ]; then
    sql 'DROP DATABASE IF EXISTS komisi_t_probe; CREATE DATABASE komisi_t_probe; DROP DATABASE komisi_t_probe;' ||
      die "MariaDB at $(mask_url "$KOMISI_TEST_MYSQL_URL") cannot CREATE/DROP DATABASE"
    log "MariaDB ok: CREATE/DROP DATABASE work"
  fi
  if command -v redis-cli >/dev/null 2>&1; then
    v="probe-$$-$RANDOM"
    if ! [ "$(rcli SET komisi_t_probe "$v" EX 60)" = OK ] || ! [ "$(rcli GET komisi_t_probe)" = "$v" ]; then
      die "Redis at $(mask_url "$KOMISI_TEST_REDIS_URL") fails SET/GET"
    fi
    rcli DEL komisi_t_probe >/dev/null
    log "Redis ok: SET/GET work"
  fi
}

# ---------------------------------------------------------------- Rust toolchain

setup_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 ||
    die "cargo not found (install the Rust toolchain with rustup, then re-run)"
  # Rust links through the system C compiler.
  if ! command -v cc >/dev/null 2>&1 && can_apt; then apt_install gcc libc6-dev; fi
  if ! on "${KOMISI_TEST_QUICK:-}" && command -v rustup >/dev/null 2>&1; then
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
      rustup component add rustfmt clippy
    fi
  fi
}

# ---------------------------------------------------------------- browser

# The console's browser test (tests/api/console.rs) needs node 20+, the npm
# package playwright-core (tests/console, `npm ci`) and Debian's chromium; it
# is required here (KOMISI_TEST_REQUIRE_BROWSER=1), so a missing piece fails
# the run instead of skipping the test.
provision_browser() {
  local chromium=${KOMISI_CHROMIUM:-/usr/bin/chromium} major
  if [ ! -x "$chromium" ]; then
    if can_apt; then
      apt_install chromium
    elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      log "installing chromium (sudo apt-get)"
      sudo -n apt-get update
      sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
    else
      die "$chromium is missing and cannot be installed here (needs root or sudo, and apt-get): install chromium, or set KOMISI_CHROMIUM"
    fi
  fi
  [ -x "$chromium" ] || die "no chromium at $chromium after installing it"
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    die "node 20+ and npm are needed for the console's browser test (tests/console): install them"
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || die "node $(node --version) is too old for playwright-core: node 20+ is needed"
  if [ ! -f tests/console/node_modules/playwright-core/package.json ]; then
    log "npm ci in tests/console (playwright-core)"
    (cd tests/console && npm ci --no-audit --no-fund) ||
      die "npm ci in tests/console failed (output above): the browser test needs playwright-core"
  fi
  export KOMISI_CHROMIUM="$chromium"
  export KOMISI_TEST_REQUIRE_BROWSER=1
  log "browser: $("$chromium" --version 2>/dev/null | head -1), node $(node --version)"
}

# ---------------------------------------------------------------- webhook receiver

# The webhook tests (tests/api/webhook_receiver.rs) run tests/webhooks/receiver.mjs,
# which checks every delivery with the Standard Webhooks library (npm
# standardwebhooks, `npm ci` in tests/webhooks).
provision_webhook_receiver() {
  local major
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    die "node 20+ and npm are needed for the webhook receiver (tests/webhooks): install them"
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 20 ] || die "node $(node --version) is too old for the webhook receiver: node 20+ is needed"
  if [ ! -f tests/webhooks/node_modules/standardwebhooks/package.json ]; then
    log "npm ci in tests/webhooks (standardwebhooks)"
    (cd tests/webhooks && npm ci --no-audit --no-fund) ||
      die "npm ci in tests/webhooks failed (output above): the webhook tests need standardwebhooks"
  fi
  log "webhook receiver: standardwebhooks $(node -p 'require("./tests/webhooks/node_modules/standardwebhooks/package.json").version')"
}

# ---------------------------------------------------------------- main

if ! on "${KOMISI_TEST_PROVISION_ONLY:-}"; then setup_rust; fi

provision_mariadb
provision_redis
provision_redis_cluster
parse_mysql_url "$KOMISI_TEST_MYSQL_URL"
parse_redis_url "$KOMISI_TEST_REDIS_URL"
log "MariaDB: $(mask_url "$KOMISI_TEST_MYSQL_URL") ($MYSQL_SOURCE)"
log "Redis:   $(mask_url "$KOMISI_TEST_REDIS_URL") ($REDIS_SOURCE)"
log "Redis Cluster: $(mask_url "$KOMISI_TEST_REDIS_CLUSTER_URL") ($CLUSTER_SOURCE)"
clean_leftovers
probe

if on "${KOMISI_TEST_PROVISION_ONLY:-}"; then
  log "KOMISI_TEST_PROVISION_ONLY set: not running cargo"
  exit 0
fi

provision_browser
provision_webhook_receiver

if on "${KOMISI_TEST_QUICK:-}"; then
  log "KOMISI_TEST_QUICK set: skipping cargo fmt and cargo clippy"
else
  log "cargo fmt --all -- --check"
  cargo fmt --all -- --check
  log "cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
fi

case "${KOMISI_TEST_BACKEND:-}" in
  "")
    log "cargo test --workspace ${TEST_ARGS[*]} (integration suite on mysql)"
    KOMISI_TEST_BACKEND=mysql cargo test --workspace "${TEST_ARGS[@]}"
    # --workspace as above, so the features (and so the build) are the same.
    log "cargo test --workspace --test api ${TEST_ARGS[*]} (integration suite on sqlite)"
    KOMISI_TEST_BACKEND=sqlite cargo test --workspace --test api "${TEST_ARGS[@]}"
    ;;
  mysql | sqlite)
    log "cargo test --workspace ${TEST_ARGS[*]} (integration suite on $KOMISI_TEST_BACKEND)"
    cargo test --workspace "${TEST_ARGS[@]}"
    ;;
  *) die "KOMISI_TEST_BACKEND must be mysql, sqlite or unset, not '$KOMISI_TEST_BACKEND'" ;;
esac

# ---------------------------------------------------------------- contract, deps

SCHEMATHESIS_VERSION=4.32.5
CARGO_DENY_VERSION=0.20.2

# The integrator's contract, against the server schemathesis then runs on
# (fresh, default program): redocly lint (recommended rules, 0 errors), a
# TypeScript client generated with openapi-typescript, type-checked with
# `tsc --noEmit`, then compiled and run through the worked example
# (tests/client/worked-example.ts).
run_client_contract() {
  local port=$1 dir=tests/client
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    die "node 20+ and npm are needed for the client contract (tests/client): install them"
  if [ ! -f $dir/node_modules/typescript/package.json ] || [ ! -f $dir/node_modules/@redocly/cli/package.json ]; then
    log "npm ci in $dir (redocly, openapi-typescript, openapi-fetch, typescript)"
    (cd $dir && npm ci --no-audit --no-fund) || die "npm ci in $dir failed (output above)"
  fi
  node -e 'fetch(process.argv[1]).then(async (r) => { if (!r.ok) throw new Error(r.status); require("fs").writeFileSync(process.argv[2], await r.text()) })' \
    "http://127.0.0.1:$port/openapi.json" "$TMP_ROOT/openapi.json" || die "GET /openapi.json failed"
  export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
  log "redocly lint /openapi.json (recommended rules)"
  (cd $dir && npx --no-install redocly lint --config redocly.yaml --format=stylish "$TMP_ROOT/openapi.json") ||
    die "redocly lint found errors in the OpenAPI document (above)"
  log "TypeScript client: openapi-typescript, tsc --noEmit, the worked example"
  mkdir -p $dir/generated
  (cd $dir && npx --no-install openapi-typescript "$TMP_ROOT/openapi.json" -o generated/komisi.d.ts >/dev/null 2>&1) ||
    die "openapi-typescript could not generate the client types"
  (cd $dir && npx --no-install tsc --noEmit -p .) || die "the generated client does not type-check (above)"
  (cd $dir && npx --no-install tsc -p . && node dist/worked-example.js "http://127.0.0.1:$port" st-storefront st-admin) ||
    die "the worked example through the generated client failed (above)"
}

# schemathesis against /openapi.json of the debug build (embedded mode: the
# HTTP layer is the same on both backends), every check, a bounded number of
# examples per operation (KOMISI_TEST_SCHEMATHESIS_EXAMPLES, default 100).
run_schemathesis() {
  local st port
  st=$(command -v schemathesis || true)
  if [ -z "$st" ] || ! "$st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    log "installing schemathesis $SCHEMATHESIS_VERSION (pip)"
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" ||
      die "pip could not install schemathesis (python3 with pip is needed)"
    st=$(command -v schemathesis) || die "schemathesis installed but not on PATH"
  fi
  tmp_root
  port=$(free_port 18700)
  env -i PATH="$PATH" DATABASE_URL="sqlite://$TMP_ROOT/schemathesis.db" \
    KOMISI_STOREFRONT_KEYS=st-storefront KOMISI_ADMIN_KEYS=st-admin \
    KOMISI_RATE_LIMIT_PER_SEC=0 KOMISI_AUTH_FAILURES_PER_MIN=0 RUST_LOG=warn \
    target/debug/komisi serve --bind "127.0.0.1:$port" >"$TMP_ROOT/schemathesis-server.log" 2>&1 &
  KOMISI_PID=$!
  for _ in $(seq 1 100); do port_open "$port" && break; sleep 0.1; done
  run_client_contract "$port"
  log "schemathesis run (all checks, ${KOMISI_TEST_SCHEMATHESIS_EXAMPLES:-100} examples per operation)"
  # A fixed seed: CI reruns the same cases (a new seed explores more: KOMISI_TEST_SCHEMATHESIS_SEED).
  # One worker: with two, Hypothesis parses lambda sources from two threads at
  # once, and CPython 3.11's AST constructor can then fail with "AST constructor
  # recursion depth mismatch" (python/cpython#106905), a Runtime Error that
  # says nothing about the API (it failed CI once, on GET /admin/payouts).
  "$st" run "http://127.0.0.1:$port/openapi.json" --checks all --workers 1 --no-color --seed "${KOMISI_TEST_SCHEMATHESIS_SEED:-1}" \
    --max-examples "${KOMISI_TEST_SCHEMATHESIS_EXAMPLES:-100}" -H "Authorization: Bearer st-admin" ||
    {
      tail -20 "$TMP_ROOT/schemathesis-server.log" >&2
      die "schemathesis found failures (above)"
    }
  stop_pid "$KOMISI_PID" 20
  KOMISI_PID=""
}

# cargo deny: licences, bans and sources, offline (deny.toml).
run_cargo_deny() {
  if ! cargo deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
    log "installing cargo-deny $CARGO_DENY_VERSION (cargo install; a few minutes, once per machine)"
    cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION" ||
      die "cargo install cargo-deny $CARGO_DENY_VERSION failed (output above)"
  fi
  # cargo metadata (under cargo deny) reads every package of the lock file,
  # other platforms' too, which a build for this one never downloaded.
  log "cargo fetch --locked (every platform's packages, for cargo deny)"
  cargo fetch --locked --quiet
  log "cargo deny check bans licenses sources"
  cargo deny --offline check bans licenses sources
}

# The chaos run (tests/chaos.rs, docs/RELIABILITY.md): the komisi binary on a
# MariaDB the test starts and SIGKILLs itself, so the server binaries must be
# installed even when a MariaDB already answers on 3306.
run_chaos() {
  if [ -z "$(find_mariadbd)" ] || [ -z "$(find_install_db)" ]; then apt_install mariadb-server; fi
  [ -n "$(find_mariadbd)" ] && [ -n "$(find_install_db)" ] || die "the chaos run needs mariadbd and mariadb-install-db"
  log "chaos run: cargo test --test chaos -- --ignored (${KOMISI_CHAOS_SECS:-60} s of faults, then the checker)"
  cargo test --test chaos -- --ignored --nocapture
}

if [ -z "${TEST_ARGS[*]}" ]; then
  run_chaos
  run_schemathesis
  run_cargo_deny
fi

if [ -n "$(find . \( -name target -o -name '.?*' \) -prune -o -type d -name benches -print -quit 2>/dev/null)" ]; then
  # Each benchmark once, in the test profile: what it needs is built already
  # (a release build of the workspace for `cargo bench --no-run` took 9 of a
  # clean CI run's 28 minutes, and clippy checks the benches' code anyway).
  log "cargo test --workspace --bench '*' (each benchmark run once)"
  cargo test --workspace --bench '*'
fi

log "all passed"
