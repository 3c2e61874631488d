#!/usr/bin/env bash
# A throw-away local PostgreSQL server for the shared-study test (tests/tune/test_postgres.py).
#   scripts/postgres.sh start DIR PORT   install the distribution's server if missing (apt-get, as root), create a
#                                        cluster in DIR, serve it on 127.0.0.1:PORT only, create database
#                                        "trainwise"; prints the SQLAlchemy URL on stdout
#   scripts/postgres.sh stop DIR         stop that server (fast shutdown)
# Exit 77: PostgreSQL is not installed and cannot be installed here (the test then skips, saying so).
set -euo pipefail
cmd="${1:?usage: postgres.sh start DIR PORT | stop DIR}"
dir="${2:?the cluster folder}"

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
as_owner() {  # initdb and the server refuse to run as root: run them as the postgres user then
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ "$cmd" = stop ]; then
  bin="$(bindir)"
  [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  exit 0
fi

port="${3:?the port to serve on}"
if [ -z "$(bindir)" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "postgres.sh: installing postgresql (the distribution's package)" >&2
    (apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 ||
     { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1; }) || true
  fi
  if [ -z "$(bindir)" ]; then
    echo "postgres.sh: PostgreSQL is not installed and could not be installed (needs root and apt-get)" >&2
    exit 77
  fi
fi
bin="$(bindir)"
mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2; exit 1; }
as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres trainwise
echo "postgresql+psycopg2://postgres@127.0.0.1:$port/trainwise"
