#!/usr/bin/env bash
# geosync demo on loopback: a primary PostgreSQL 15 and two remote sites
# ("dublin", "virginia"), each in its own throwaway cluster, with geosyncd on
# every site linked by mutual TLS, pgbench writing to the primary, and the
# sites' progress printed as it goes. Everything is removed on exit or Ctrl-C.
#
#   scripts/demo.sh                 # about a minute
#   DEMO_SECONDS=60 scripts/demo.sh # longer pgbench run
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEMO_SECONDS=${DEMO_SECONDS:-20}
PGBIN=${GEOSYNC_PG_BINDIR:-/usr/lib/postgresql/15/bin}
BUILD=$ROOT/build/release

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing missing packages (scripts/install-deps.sh)"
scripts/install-deps.sh

say "building geosync (Release) in $BUILD"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C "$BUILD" geosyncd geosyncctl
GEOSYNCD=$BUILD/agent/geosyncd
GEOSYNCCTL=$BUILD/agent/geosyncctl

WORK=$(mktemp -d /tmp/geosync-demo-XXXXXX)
chmod 755 "$WORK"
PIDS=()
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then
  RUNAS=(runuser -u postgres --)   # PostgreSQL refuses to run as root
  chown postgres: "$WORK"
fi

cleanup() {
  set +e
  say "cleaning up"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  for site in primary dublin virginia; do
    if [ -f "$WORK/$site/data/postmaster.pid" ]; then
      "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$WORK/$site/data" -m fast stop >/dev/null 2>&1
    fi
  done
  rm -rf "$WORK"
  echo "removed $WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

declare -A PORT
start_cluster() {
  local site=$1
  PORT[$site]=$(free_port)
  "${RUNAS[@]}" mkdir -p "$WORK/$site"
  "${RUNAS[@]}" "$PGBIN/initdb" -D "$WORK/$site/data" -U postgres -A trust --no-sync -E UTF8 >/dev/null
  cat >> "$WORK/$site/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = ${PORT[$site]}
unix_socket_directories = '$WORK/$site'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
CONF
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$WORK/$site/data" -l "$WORK/$site/postgres.log" -w start >/dev/null
  echo "  $site: PostgreSQL on 127.0.0.1:${PORT[$site]} (log $WORK/$site/postgres.log)"
}

dsn() { echo "host=127.0.0.1 port=${PORT[$1]} user=postgres dbname=postgres"; }
psql_at() { "$PGBIN/psql" -X -q -At "$(dsn "$1")" -c "$2"; }

say "starting three throwaway PostgreSQL 15 clusters under $WORK"
for site in primary dublin virginia; do start_cluster "$site"; done

say "creating a deployment CA and a certificate per site (mutual TLS)"
CERTS=$WORK/certs
mkdir -p "$CERTS"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=geosync-demo-ca" \
  -keyout "$CERTS/ca.key" -out "$CERTS/ca.crt" 2>/dev/null
for site in frankfurt dublin virginia; do
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$site" \
    -keyout "$CERTS/$site.key" -out "$CERTS/$site.csr" 2>/dev/null
  openssl x509 -req -in "$CERTS/$site.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
    -CAcreateserial -days 2 -out "$CERTS/$site.crt" 2>/dev/null
done
echo "  $CERTS: ca.crt, frankfurt/dublin/virginia .crt/.key"

STREAM_PORT=$(free_port)
declare -A ADMIN_PORT
for site in frankfurt dublin virginia; do ADMIN_PORT[$site]=$(free_port); done
head -c 24 /dev/urandom | base64 > "$WORK/admin.token"
admin() {
  echo "\"admin\": {\"listen\": {\"host\": \"127.0.0.1\", \"port\": ${ADMIN_PORT[$1]}}, \"token_file\": \"$WORK/admin.token\"}"
}
tls() {
  echo "\"tls\": {\"enabled\": true, \"ca_file\": \"$CERTS/ca.crt\", \"cert_file\": \"$CERTS/$1.crt\", \"key_file\": \"$CERTS/$1.key\"}"
}
cat > "$WORK/frankfurt.json" <<JSON
{
  "cluster_id": "demo", "site": "frankfurt", "role": "source",
  "state_dir": "$WORK/frankfurt-agent",
  "postgres": {"dsn": "$(dsn primary)"},
  "spool": {"dir": "$WORK/frankfurt-agent/spool"},
  "listen": {"host": "127.0.0.1", "port": $STREAM_PORT},
  "sites": ["dublin", "virginia"],
  $(tls frankfurt),
  $(admin frankfurt),
  "heartbeat_ms": 500
}
JSON
for site in dublin virginia; do
  cat > "$WORK/$site.json" <<JSON
{
  "cluster_id": "demo", "site": "$site", "role": "replica",
  "state_dir": "$WORK/$site-agent",
  "postgres": {"dsn": "$(dsn $site)"},
  "spool": {"dir": "$WORK/$site-agent/spool"},
  "upstream": {"host": "127.0.0.1", "port": $STREAM_PORT},
  $(tls $site),
  $(admin $site),
  "heartbeat_ms": 500
}
JSON
done

cat > "$WORK/topology.json" <<JSON
{
  "cluster_id": "demo",
  "sites": [
    {"name": "frankfurt", "admin": "http://127.0.0.1:${ADMIN_PORT[frankfurt]}"},
    {"name": "dublin", "admin": "http://127.0.0.1:${ADMIN_PORT[dublin]}"},
    {"name": "virginia", "admin": "http://127.0.0.1:${ADMIN_PORT[virginia]}"}
  ]
}
JSON

say "installing DDL capture on the primary (geosyncctl init)"
"$GEOSYNCCTL" init --dsn "$(dsn primary)"

say "starting geosyncd: frankfurt (source) and dublin, virginia (replicas)"
for site in frankfurt dublin virginia; do
  "$GEOSYNCD" --config "$WORK/$site.json" >"$WORK/$site-geosyncd.log" 2>&1 &
  PIDS+=($!)
  echo "  $site: geosyncd pid $! (log $WORK/$site-geosyncd.log)"
done

say "waiting for the source to create and stream its replication slot"
# Only writes after the slot exists are shipped (earlier data is what
# seeding is for), so the demo starts writing once the slot is active.
for _ in $(seq 1 120); do
  active=$(psql_at primary "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'geosync' AND active")
  [ "$active" = 1 ] && break
  sleep 0.5
done
if [ "$active" != 1 ]; then
  echo "the source did not start streaming; see $WORK/frankfurt-geosyncd.log" >&2
  cat "$WORK/frankfurt-geosyncd.log" >&2
  exit 1
fi
echo "  slot geosync is active"

say "pgbench -i on the primary: tables arrive on the replicas through DDL capture"
"$PGBIN/pgbench" -h 127.0.0.1 -p "${PORT[primary]}" -U postgres -i -s 1 -q postgres 2>&1 | tail -1

say "live traffic: pgbench -c 2 for ${DEMO_SECONDS}s on the primary"
"$PGBIN/pgbench" -h 127.0.0.1 -p "${PORT[primary]}" -U postgres -n -c 2 -T "$DEMO_SECONDS" postgres \
  >"$WORK/pgbench.log" 2>&1 &
BENCH=$!

status() {
  "$GEOSYNCCTL" status --topology "$WORK/topology.json" || true
  printf '  pgbench_history rows: primary %s, dublin %s, virginia %s\n' \
    "$(psql_at primary 'SELECT count(*) FROM pgbench_history' 2>/dev/null || echo -)" \
    "$(psql_at dublin 'SELECT count(*) FROM pgbench_history' 2>/dev/null || echo -)" \
    "$(psql_at virginia 'SELECT count(*) FROM pgbench_history' 2>/dev/null || echo -)"
}

while kill -0 "$BENCH" 2>/dev/null; do
  sleep 3
  say "status at $(date +%T)"
  status
done
wait "$BENCH"
grep -E "^tps|number of transactions actually processed" "$WORK/pgbench.log" | sed 's/^/  /'

say "waiting for both replicas to apply the primary's last position"
TARGET=$(psql_at primary "SELECT pg_current_wal_lsn()")
for site in dublin virginia; do
  for _ in $(seq 1 120); do
    ok=$(psql_at "$site" "SELECT coalesce(max(remote_lsn),'0/0') >= '$TARGET' FROM pg_replication_origin_status")
    [ "$ok" = t ] && break
    sleep 0.5
  done
  echo "  $site applied past $TARGET: $ok"
done

say "row-by-row check of every pgbench table"
for table in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
  p=$(psql_at primary "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM $table t")
  for site in dublin virginia; do
    r=$(psql_at "$site" "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM $table t")
    [ "$p" = "$r" ] && verdict=identical || verdict=DIFFERENT
    printf '  %-17s %-9s %s\n' "$table" "$site" "$verdict"
  done
done

say "the deployment as geosyncctl sees it (geosyncctl status --topology topology.json)"
"$GEOSYNCCTL" status --topology "$WORK/topology.json" || true
echo
echo "logs were in $WORK (removed on exit)"
