#!/bin/sh
# The streaming replica: on first start, copy the primary with pg_basebackup (-R writes the
# standby settings), then run PostgreSQL as a hot standby.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h db-primary -p 5432 -U "$POSTGRES_USER"; do sleep 1; done
  PGPASSWORD="$POSTGRES_PASSWORD" pg_basebackup -h db-primary -p 5432 -U "$POSTGRES_USER" \
    -D "$PGDATA" -R -X stream --checkpoint fast
  chmod 700 "$PGDATA"
fi
exec postgres -c hot_standby=on -c hot_standby_feedback=on
