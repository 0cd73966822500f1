#!/usr/bin/env bash
# The one test command: provisions MariaDB and Redis when none answer at the
# default local addresses (throwaway instances from the installed binaries,
# installing the Debian packages first when missing and running as root),
# then runs fmt, clippy and the whole test suite.
#
#   scripts/test.sh                 everything
#   scripts/test.sh -- worked       only tests whose name contains "worked"
#   KOMISI_TEST_QUICK=1 ...         skip fmt and clippy
#   KOMISI_TEST_MYSQL_URL / KOMISI_TEST_REDIS_URL   use these servers as they are
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

TMP_ROOT=""
MARIADB_PID=""
REDIS_PID=""

cleanup() {
  if [ -n "$MARIADB_PID" ]; then kill "$MARIADB_PID" 2>/dev/null || true; wait "$MARIADB_PID" 2>/dev/null || true; fi
  if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; fi
  if [ -n "$TMP_ROOT" ]; then rm -rf "$TMP_ROOT"; fi
}
trap cleanup EXIT

tmp_root() {
  if [ -z "$TMP_ROOT" ]; then TMP_ROOT=$(mktemp -d /tmp/komisi-test.XXXXXX); fi
}

apt_install() {
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $* missing and cannot be installed (need root and apt-get)" >&2
    exit 1
  fi
  echo "== installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# True when something listens on 127.0.0.1:$1.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
  local p
  for p in $(seq "$1" $(( $1 + 200 ))); do
    if ! port_open "$p"; then echo "$p"; return; fi
  done
  echo "error: no free port near $1" >&2
  exit 1
}

mariadb_answers() { # port
  local client
  client=$(command -v mariadb || command -v mysql || true)
  [ -n "$client" ] || return 1
  "$client" --protocol=TCP -h127.0.0.1 -P"$1" -uroot -e 'SELECT 1' >/dev/null 2>&1
}

find_mariadbd() {
  local c
  for c in mariadbd /usr/sbin/mariadbd mysqld /usr/sbin/mysqld; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return; fi
  done
}

provision_mariadb() {
  if [ -n "${KOMISI_TEST_MYSQL_URL:-}" ]; then return; fi
  if ! command -v mariadb >/dev/null 2>&1 && ! command -v mysql >/dev/null 2>&1; then
    apt_install mariadb-client
  fi
  if [ -z "${KOMISI_TEST_FORCE_THROWAWAY:-}" ] && mariadb_answers 3306; then
    export KOMISI_TEST_MYSQL_URL="mysql://root@127.0.0.1:3306"
    return
  fi
  local server
  server=$(find_mariadbd)
  if [ -z "$server" ]; then
    apt_install mariadb-server
    server=$(find_mariadbd)
  fi
  tmp_root
  local dir="$TMP_ROOT/mariadb" port
  port=$(free_port 33060)
  mkdir -p "$dir/data"
  echo "== starting a throwaway MariaDB on 127.0.0.1:$port"
  mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$dir/data" \
    --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
    || { cat "$dir/install.log" >&2; exit 1; }
  "$server" --no-defaults --user="$(id -un)" --datadir="$dir/data" --socket="$dir/mysqld.sock" \
    --port="$port" --bind-address=127.0.0.1 --skip-log-bin --innodb-flush-log-at-trx-commit=2 \
    --max-connections=500 >"$dir/server.log" 2>&1 &
  MARIADB_PID=$!
  local i
  for i in $(seq 1 120); do
    if mariadb_answers "$port"; then break; fi
    if ! kill -0 "$MARIADB_PID" 2>/dev/null; then cat "$dir/server.log" >&2; exit 1; fi
    sleep 0.5
  done
  mariadb_answers "$port" || { echo "error: MariaDB did not start" >&2; cat "$dir/server.log" >&2; exit 1; }
  export KOMISI_TEST_MYSQL_URL="mysql://root@127.0.0.1:$port"
}

redis_answers() { # port
  [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]
}

provision_redis() {
  if [ -n "${KOMISI_TEST_REDIS_URL:-}" ]; then return; fi
  if ! command -v redis-cli >/dev/null 2>&1; then apt_install redis-tools; fi
  if [ -z "${KOMISI_TEST_FORCE_THROWAWAY:-}" ] && redis_answers 6379; then
    export KOMISI_TEST_REDIS_URL="redis://127.0.0.1:6379"
    return
  fi
  if ! command -v redis-server >/dev/null 2>&1; then apt_install redis-server; fi
  tmp_root
  local dir="$TMP_ROOT/redis" port
  port=$(free_port 63790)
  mkdir -p "$dir"
  echo "== starting a throwaway Redis on 127.0.0.1:$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --logfile "$dir/redis.log" --daemonize no >/dev/null 2>&1 &
  REDIS_PID=$!
  local i
  for i in $(seq 1 60); do
    if redis_answers "$port"; then break; fi
    sleep 0.25
  done
  redis_answers "$port" || { echo "error: Redis did not start" >&2; cat "$dir/redis.log" >&2; exit 1; }
  export KOMISI_TEST_REDIS_URL="redis://127.0.0.1:$port"
}

# Leftovers of earlier runs (a test keeps its database only when it failed).
clean_leftovers() {
  local mysql_hostport port redis_hostport rport client dbs
  mysql_hostport=${KOMISI_TEST_MYSQL_URL##*@}
  port=${mysql_hostport##*:}
  client=$(command -v mariadb || command -v mysql)
  dbs=$("$client" --protocol=TCP -h127.0.0.1 -P"$port" -uroot -N -e "SHOW DATABASES LIKE 'komisi\\_t\\_%'" 2>/dev/null || true)
  for db in $dbs; do "$client" --protocol=TCP -h127.0.0.1 -P"$port" -uroot -e "DROP DATABASE \`$db\`" || true; done
  redis_hostport=${KOMISI_TEST_REDIS_URL#redis://}
  rport=${redis_hostport##*:}
  rport=${rport%%/*}
  redis-cli -h 127.0.0.1 -p "$rport" --scan --pattern 'komisi_t_*' | xargs -r -n 500 redis-cli -h 127.0.0.1 -p "$rport" DEL >/dev/null || true
}

provision_mariadb
provision_redis
echo "== MariaDB: $KOMISI_TEST_MYSQL_URL"
echo "== Redis:   $KOMISI_TEST_REDIS_URL"
case "$KOMISI_TEST_MYSQL_URL" in mysql://root@127.0.0.1:*) clean_leftovers ;; esac

if [ -n "${KOMISI_TEST_PROVISION_ONLY:-}" ]; then exit 0; fi

extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi

if [ -z "${KOMISI_TEST_QUICK:-}" ]; then
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
  echo "== cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings
fi
echo "== cargo test"
cargo test --workspace -- "${extra[@]}"
if compgen -G "benches/*.rs" >/dev/null || compgen -G "*/benches/*.rs" >/dev/null; then
  echo "== cargo bench --no-run"
  cargo bench --workspace --no-run
fi
