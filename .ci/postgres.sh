#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the store tests and print its URL.
# Usage: eval "$(bash .ci/postgres.sh)"   -> exports HEADMAPS_TEST_POSTGRES_URL
set -euo pipefail
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
PGPORT="${HEADMAPS_PGPORT:-54329}"
PGDATA="${HEADMAPS_PGDATA:-/tmp/headmaps-pg}"
RUNAS=()
if [ "$(id -u)" = 0 ]; then RUNAS=(runuser -u postgres --); fi
if ! "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    rm -rf "$PGDATA"
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
    "${RUNAS[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust >/dev/null
    "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k /tmp -c fsync=off" start >/dev/null
fi
"$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='headmaps_test'" | grep -q 1 \
    || "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres headmaps_test
echo "export HEADMAPS_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$PGPORT/headmaps_test"
