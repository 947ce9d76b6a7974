#!/usr/bin/env bash
# Captures real pgoutput messages for the fuzz corpora: a throwaway
# PostgreSQL 15 cluster runs a workload of every message kind geosync meets
# (inserts, updates with and without old keys, deletes, unchanged TOAST, truncate,
# DDL, logical messages, a rollback, a large transaction), and each message
# the walsender would send is read back through
# pg_logical_slot_peek_binary_changes, once per protocol version.
# Writes lines "<proto_version> <xid> <hex message>" to OUT.
# make_corpus turns them into every harness's seed corpus (README.md).
# Usage: tests/fuzz/capture_pgoutput.sh OUT
set -euo pipefail
out=$(realpath -m "$1")
mkdir -p "$(dirname "$out")"
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
work=$(mktemp -d /tmp/geosync-capture-XXXXXX)
chmod 755 "$work"
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then
  RUNAS=(runuser -u postgres --)  # PostgreSQL refuses to run as root
  chown postgres: "$work"
fi
cleanup() {
  if [ -f "$work/data/postmaster.pid" ]; then
    "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${RUNAS[@]}" "$PGBIN/initdb" -D "$work/data" -U postgres -A trust --no-sync -E UTF8 >/dev/null
cat >>"$work/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work'
wal_level = logical
fsync = off
CONF
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w start >/dev/null
psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=$port user=postgres dbname=postgres" "$@"; }

psql >/dev/null <<'SQL'
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE accounts (id bigint PRIMARY KEY, balance numeric(12,2), owner text, note text);
-- stored out of line uncompressed: an UPDATE that leaves it alone sends it as unchanged TOAST
ALTER TABLE accounts ALTER COLUMN note SET STORAGE EXTERNAL;
CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), payload jsonb,
                     tags text[], m mood, b bytea, r int4range, p point, bits bit varying(12));
CREATE TABLE nokey (a int, b text);
ALTER TABLE nokey REPLICA IDENTITY FULL;
CREATE TABLE keyed_by_index (a int NOT NULL, b text);
CREATE UNIQUE INDEX keyed_by_index_a ON keyed_by_index (a);
ALTER TABLE keyed_by_index REPLICA IDENTITY USING INDEX keyed_by_index_a;
CREATE PUBLICATION corpus FOR ALL TABLES;
SELECT pg_create_logical_replication_slot('corpus', 'pgoutput');
SQL
psql >/dev/null <<'SQL'
INSERT INTO accounts SELECT g, g * 1.5, 'owner ' || g, NULL FROM generate_series(1, 20) g;
INSERT INTO events (payload, tags, m, b, r, p, bits)
  VALUES ('{"k": [1, 2, {"x": null}]}', '{a,"b c",NULL}', 'happy', '\x00ff10', '[1,10)', '(1.5,-2)', B'101'),
         (NULL, '{}', NULL, NULL, 'empty', NULL, NULL);
UPDATE accounts SET balance = balance - 10 WHERE id <= 5;
UPDATE accounts SET id = id + 100 WHERE id = 6;
DELETE FROM accounts WHERE id = 7;
INSERT INTO accounts VALUES (1000, 0, 'toast', repeat('0123456789abcdef', 300));
UPDATE accounts SET balance = 1 WHERE id = 1000;
INSERT INTO nokey VALUES (1, 'one'), (2, NULL);
UPDATE nokey SET b = 'uno' WHERE a = 1;
DELETE FROM nokey WHERE a = 2;
INSERT INTO keyed_by_index VALUES (1, 'x');
UPDATE keyed_by_index SET a = 2;
BEGIN; INSERT INTO accounts VALUES (2000, 1, 'rolled back', NULL); ROLLBACK;
SELECT pg_logical_emit_message(true, 'geosync.ddl',
  '{"sql":"ALTER TABLE accounts ADD COLUMN extra int","search_path":"\"$user\", public","role":"postgres"}');
ALTER TABLE accounts ADD COLUMN extra int;
INSERT INTO accounts VALUES (3000, 3, 'after ddl', NULL, 42);
SELECT pg_logical_emit_message(true, 'geosync.sequences',
  '[{"schema":"public","name":"events_id_seq","last_value":2}]');
SELECT pg_logical_emit_message(false, 'geosync.heartbeat', '{"epoch":1}');
TRUNCATE nokey, keyed_by_index;
BEGIN;
INSERT INTO events (payload) SELECT jsonb_build_object('n', g) FROM generate_series(1, 300) g;
SAVEPOINT s; INSERT INTO nokey VALUES (9, 'sub'); RELEASE SAVEPOINT s;
COMMIT;
SQL
: >"$out"
for v in 1 2; do
  psql -At -F ' ' -c "SELECT $v, xid, encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes(
      'corpus', NULL, NULL, 'proto_version', '$v', 'publication_names', 'corpus',
      'messages', 'true')" >>"$out"
done
echo "captured $(wc -l <"$out") pgoutput messages into $out"
