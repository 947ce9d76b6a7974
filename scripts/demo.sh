#!/usr/bin/env bash
# geosync demo on loopback: a primary PostgreSQL 15 and two remote sites
# ("dublin", "virginia"), each in its own throwaway cluster, with geosyncd on
# every site linked by mutual TLS, pgbench writing to the primary, and the
# sites' progress printed as it goes. It ends with a planned switchover to
# dublin under load and a switch back to frankfurt, each with zero data loss.
# Everything is removed on exit or Ctrl-C.
#
#   scripts/demo.sh                 # about a minute
#   DEMO_SECONDS=60 scripts/demo.sh # longer pgbench run
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEMO_SECONDS=${DEMO_SECONDS:-20}
PGBIN=${GEOSYNC_PG_BINDIR:-/usr/lib/postgresql/15/bin}
BUILD=${GEOSYNC_BUILD_DIR:-$ROOT/build/release}

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
GEOSYNC_CERT_DAYS=2 scripts/make-certs.sh "$CERTS" frankfurt dublin virginia >/dev/null
echo "  $CERTS: ca.crt, frankfurt/dublin/virginia .crt/.key (scripts/make-certs.sh)"

# Every site gets a stream port, the names of the others and the topology:
# any of them can become the source.
declare -A ADMIN_PORT STREAM
for site in frankfurt dublin virginia; do
  ADMIN_PORT[$site]=$(free_port)
  STREAM[$site]=$(free_port)
done
STREAM_PORT=${STREAM[frankfurt]}
others() {
  local out="" s
  for s in frankfurt dublin virginia; do [ "$s" = "$1" ] || out="$out${out:+, }\"$s\""; done
  echo "[$out]"
}
# geosyncd refuses a token file others can read, and tokens under 32 characters.
(umask 077 && openssl rand -hex 32 > "$WORK/admin.token")
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
  "sites": $(others frankfurt),
  "topology": "$WORK/topology.json",
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
  "listen": {"host": "127.0.0.1", "port": ${STREAM[$site]}},
  "sites": $(others $site),
  "topology": "$WORK/topology.json",
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
    {"name": "frankfurt", "admin": "http://127.0.0.1:${ADMIN_PORT[frankfurt]}", "stream": "127.0.0.1:${STREAM[frankfurt]}"},
    {"name": "dublin", "admin": "http://127.0.0.1:${ADMIN_PORT[dublin]}", "stream": "127.0.0.1:${STREAM[dublin]}"},
    {"name": "virginia", "admin": "http://127.0.0.1:${ADMIN_PORT[virginia]}", "stream": "127.0.0.1:${STREAM[virginia]}"}
  ]
}
JSON

say "installing DDL capture on every site (geosyncctl init): any site may become the source"
for c in primary dublin virginia; do "$GEOSYNCCTL" init --dsn "$(dsn $c)"; done

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

# compare SOURCE_CLUSTER: every pgbench table of the other clusters, row by row.
compare() {
  local src=$1 table p r c verdict
  for table in pgbench_accounts pgbench_branches pgbench_tellers pgbench_history; do
    p=$(psql_at "$src" "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM $table t")
    for c in primary dublin virginia; do
      [ "$c" = "$src" ] && continue
      r=$(psql_at "$c" "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM $table t")
      [ "$p" = "$r" ] && verdict=identical || verdict=DIFFERENT
      printf '  %-17s %-9s %s\n' "$table" "$c" "$verdict"
    done
  done
}

# wait_applied SOURCE_CLUSTER EPOCH: the other clusters applied all it wrote.
wait_applied() {
  local src=$1 epoch=$2 target c ok
  target=$(psql_at "$src" "SELECT pg_current_wal_lsn()")
  for c in primary dublin virginia; do
    [ "$c" = "$src" ] && continue
    for _ in $(seq 1 120); do
      ok=$(psql_at "$c" "SELECT coalesce(max(remote_lsn),'0/0') >= '$target' FROM pg_replication_origin_status s JOIN pg_replication_origin o ON o.roident = s.local_id WHERE o.roname = 'geosync_demo_e$epoch'")
      [ "$ok" = t ] && break
      sleep 0.5
    done
    echo "  $c applied epoch $epoch past $target: $ok"
  done
}

say "row-by-row check of every pgbench table"
compare primary

say "planned switchover to dublin while pgbench writes to frankfurt"
"$PGBIN/pgbench" -h 127.0.0.1 -p "${PORT[primary]}" -U postgres -n -c 2 -T 30 postgres \
  >"$WORK/pgbench-switchover.log" 2>&1 &
BENCH=$!
sleep 2
"$GEOSYNCCTL" switchover --to dublin --topology "$WORK/topology.json" \
  --token-file "$WORK/admin.token" --yes
wait "$BENCH" || true   # the fence ended its sessions
echo "  frankfurt now refuses writes:"
psql_at primary "INSERT INTO pgbench_history (tid, bid, aid, delta) VALUES (1, 1, 1, 0)" 2>&1 \
  | sed 's/^/    /' || true

say "live traffic on the new primary dublin: pgbench -c 2 for 5s"
"$PGBIN/pgbench" -h 127.0.0.1 -p "${PORT[dublin]}" -U postgres -n -c 2 -T 5 postgres 2>&1 \
  | grep -E "^tps" | sed 's/^/  /'
wait_applied dublin 2
compare dublin

say "switch back to frankfurt"
"$GEOSYNCCTL" switchover --to frankfurt --topology "$WORK/topology.json" \
  --token-file "$WORK/admin.token" --yes
"$PGBIN/pgbench" -h 127.0.0.1 -p "${PORT[primary]}" -U postgres -n -c 2 -T 3 postgres 2>&1 \
  | grep -E "^tps" | sed 's/^/  /'
wait_applied primary 3
compare primary

say "the deployment as geosyncctl sees it (geosyncctl status --topology topology.json)"
"$GEOSYNCCTL" status --topology "$WORK/topology.json" || true
echo
echo "logs were in $WORK (removed on exit)"
