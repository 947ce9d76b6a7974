#!/usr/bin/env bash
# docs/runbook.md, run: the runbook's commands in the runbook's order against
# two loopback sites, frankfurt (source) and dublin (replica), each with its
# own throwaway PostgreSQL 15 (initdb as the postgres user, free ports,
# 127.0.0.1 only), certificates from scripts/make-certs.sh and mutual TLS.
# Paths are the runbook's with a prefix: /etc/geosync -> $ETC, and the
# programs are those of the .deb built by cpack and unpacked with dpkg -x into
# $PKG (installing with dpkg is tests/packaging/deb_test.sh's job); systemctl
# is replaced by starting geosyncd directly (there is no systemd in CI; the
# unit itself is checked by deb_test.sh).
#
# Each runbook section is one function below, called in order at the end:
# deploy, daily checks, switchover to dublin and back, failover to dublin,
# frankfurt's rejoin and a switchover back to it, today's drill, and last a
# rejoin refused because the old primary diverged (it cannot come back without
# a re-seed). The drill rehearsal prints figures that change every run: only
# its exit code, report and history are checked.
#
# Usage: runbook_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
SRC=$(cd "$1" && pwd)
BUILD=$(cd "$2" && pwd)
PGBIN=${GEOSYNC_PG_BINDIR:-/usr/lib/postgresql/15/bin}
SITES=(frankfurt dublin)

T=$(mktemp -d /tmp/geosync-runbook-XXXXXX)
chmod 755 "$T"
PKG=$T/pkg                 # / in the runbook: the unpacked package
GEOSYNCD=$PKG/usr/bin/geosyncd
GEOSYNCCTL=$PKG/usr/bin/geosyncctl
MAKE_CERTS=$PKG/usr/share/geosync/make-certs.sh
ETC=$T/etc/geosync         # /etc/geosync in the runbook
VAR=$T/var/lib/geosync     # /var/lib/geosync in the runbook
mkdir -p "$ETC" "$VAR"
RUNAS=()
if [ "$(id -u)" -eq 0 ]; then
  RUNAS=(runuser -u postgres --)  # PostgreSQL refuses to run as root
fi
declare -A PGPORT ADMIN STREAM PID

# ---- helpers -----------------------------------------------------------------
STEP=""
step() { STEP=$*; printf '\n== runbook %s (at %d s)\n' "$*" "$SECONDS"; }
fail() {
  echo "FAIL in step '$STEP': $*" >&2
  for s in "${SITES[@]}"; do
    [ -f "$T/$s-geosyncd.log" ] && { echo "--- geosyncd $s log" >&2; tail -40 "$T/$s-geosyncd.log" >&2; }
  done
  exit 1
}
# expect_output "what" PATTERN OUTPUT: OUTPUT matches the extended regex.
expect_output() {
  grep -Eq -- "$2" <<<"$3" || fail "$1: expected /$2/ in:
$3"
}
# runbook_says "TEXT": docs/runbook.md still gives this command or output, so
# the doc and this script cannot drift apart silently.
runbook_says() {
  grep -qF -- "$1" "$SRC/docs/runbook.md" || fail "docs/runbook.md no longer says: $1"
}
free_port() {  # free_port [N]: N (default 1) free TCP ports on 127.0.0.1, one per line
  # From 20000-32767, below the ephemeral range, skipping ports that a C++
  # test holds (tests/support/ports.h).
  python3 -c 'import fcntl,os,random,socket,sys
os.makedirs("/tmp/geosync-test-ports",exist_ok=True)
got=[]
while len(got)<int(sys.argv[1]):
  p=random.randint(20000,32767)
  if p in got: continue
  with open("/tmp/geosync-test-ports/%d"%p,"a") as f:
    try: fcntl.flock(f,fcntl.LOCK_EX|fcntl.LOCK_NB)
    except OSError: continue
  s=socket.socket()
  try: s.bind(("127.0.0.1",p)); got.append(p)
  except OSError: pass
  s.close()
for p in got: print(p)' "${1:-1}"
}
psql_at() {  # psql_at SITE SQL: as the postgres superuser, database app
  "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PGPORT[$1]}" -U postgres -d app -c "$2"
}
dsn() { echo "host=127.0.0.1 port=${PGPORT[$1]} dbname=app user=geosync"; }
# wait_until SECONDS "what" COMMAND...: polls COMMAND until it succeeds.
wait_until() {
  local deadline=$(( $(date +%s) + $1 )) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for: $what"
    sleep 0.3
  done
}
start_agent() {  # stands in for: systemctl enable --now geosyncd@SITE
  "$GEOSYNCD" --config "$ETC/$1.json" >>"$T/$1-geosyncd.log" 2>&1 &
  PID[$1]=$!
}
cleanup() {
  set +e
  for s in "${!PID[@]}"; do kill "${PID[$s]}" 2>/dev/null; done
  for s in "${!PID[@]}"; do wait "${PID[$s]}" 2>/dev/null; done
  for s in "${SITES[@]}"; do
    [ -f "$T/pg-$s/data/postmaster.pid" ] &&
      "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$T/pg-$s/data" -m immediate stop >/dev/null 2>&1 &
  done
  wait
  rm -rf "$T"
}
trap cleanup EXIT

# Not in the runbook: a throwaway PostgreSQL 15 per site, as a DBA would have.
make_cluster() {  # PGPORT[SITE] set by the caller; run in the background, one per site
  local s=$1
  mkdir -p "$T/pg-$s"
  [ ${#RUNAS[@]} -gt 0 ] && chown postgres: "$T/pg-$s"
  "${RUNAS[@]}" "$PGBIN/initdb" -D "$T/pg-$s/data" -U postgres -A trust --no-sync -E UTF8 \
    >/dev/null || fail "initdb $s"
  cat >>"$T/pg-$s/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = ${PGPORT[$s]}
unix_socket_directories = '$T/pg-$s'
fsync = off
CONF
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$T/pg-$s/data" -l "$T/pg-$s/server.log" -w start >/dev/null ||
    fail "pg_ctl start $s"
  "$PGBIN/psql" -X -q -h 127.0.0.1 -p "${PGPORT[$s]}" -U postgres -c "CREATE DATABASE app"
}

# ---- Deploying a new site ---------------------------------------------------------
deploy_1_install() {
  step "deploy 1: install the package (geosyncctl --version)"
  local out debs
  out=$(cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$T/deb" 2>&1) || fail "cpack: $out"
  debs=("$T"/deb/geosync_*_*.deb)
  [ -f "${debs[0]}" ] || fail "cpack made no geosync_*.deb: $out"
  dpkg -x "${debs[0]}" "$PKG"
  runbook_says "sudo apt-get install ./geosync_"
  runbook_says "geosyncctl --version"
  out=$("$GEOSYNCCTL" --version)
  expect_output "version" '^geosyncctl [0-9]+\.[0-9]+\.[0-9]+$' "$out"
}

deploy_2_postgres() {
  step "deploy 2: prepare PostgreSQL on every site"
  for s in "${SITES[@]}"; do
    # check-config before the settings: it names what to change.
    cat >"$ETC/$s.json" <<JSON
{"cluster_id": "prod", "site": "$s", "role": "replica", "state_dir": "$VAR/$s",
 "postgres": {"dsn": "host=127.0.0.1 port=${PGPORT[$s]} dbname=app user=postgres"},
 "spool": {"dir": "$VAR/$s/spool"}, "upstream": {"host": "127.0.0.1", "port": ${PGPORT[$s]}}}
JSON
    echo "wal_level = replica  # PostgreSQL's default" >>"$T/pg-$s/data/postgresql.conf"
    "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$T/pg-$s/data" -w restart >/dev/null
    local out rc=0
    out=$("$GEOSYNCCTL" check-config -c "$ETC/$s.json") || rc=$?
    [ "$rc" = 3 ] || fail "check-config on wal_level=replica exited $rc, expected 3: $out"
    echo "$out"
    expect_output "wal_level named" 'FAIL  wal_level: replica' "$out"
    expect_output "fix given" 'set wal_level = logical in postgresql.conf' "$out"
    runbook_says "FAIL  wal_level: replica"
    # The runbook's settings.
    cat >>"$T/pg-$s/data/postgresql.conf" <<CONF
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
CONF
    "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$T/pg-$s/data" -w restart >/dev/null
    runbook_says "CREATE ROLE geosync LOGIN SUPERUSER REPLICATION"
    psql_at "$s" "CREATE ROLE geosync LOGIN SUPERUSER REPLICATION"
  done
}

deploy_3_schema() {
  step "deploy 3: the application's schema on every site"
  psql_at frankfurt "CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric)"
  psql_at frankfurt "CREATE TABLE events (at timestamptz, what text)"  # no PK: check-config names it
  "$PGBIN/pg_dump" -h 127.0.0.1 -p "${PGPORT[frankfurt]}" -U geosync -Fc --schema-only \
    --exclude-schema=_geosync --no-publications --no-subscriptions -f "$T/app-schema.dump" app
  runbook_says "--exclude-schema=_geosync"
  runbook_says "pg_restore -l app-schema.dump | grep -v -e 'EVENT TRIGGER' -e geosync_write_guard > app-schema.list"
  "$PGBIN/pg_restore" -l "$T/app-schema.dump" | grep -v -e 'EVENT TRIGGER' -e geosync_write_guard \
    >"$T/app-schema.list"
  "$PGBIN/pg_restore" -h 127.0.0.1 -p "${PGPORT[dublin]}" -U geosync -d app \
    -L "$T/app-schema.list" "$T/app-schema.dump"
  [ "$(psql_at dublin "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")" = 2 ] ||
    fail "dublin does not have the 2 tables"
}

deploy_4_certs() {
  step "deploy 4: certificates (make-certs.sh), copied to each site"
  local out
  runbook_says "/usr/share/geosync/make-certs.sh ~/geosync-certs frankfurt dublin"
  out=$("$MAKE_CERTS" "$T/certs" "${SITES[@]}")
  expect_output "CA" 'created CA' "$out"
  expect_output "site cert" 'created .*/dublin.crt \(CN=dublin, serverAuth,clientAuth\)' "$out"
  for s in "${SITES[@]}"; do
    install -m 0644 "$T/certs/ca.crt" "$ETC/ca.crt"
    install -m 0640 "$T/certs/$s.crt" "$T/certs/$s.key" "$ETC/"
  done
  out=$(openssl verify -CAfile "$ETC/ca.crt" "$ETC/frankfurt.crt" "$ETC/dublin.crt")
  expect_output "verify" 'dublin.crt: OK' "$out"
}

deploy_5_config() {
  step "deploy 5: site configs, topology and admin token"
  local ports
  mapfile -t ports < <(free_port $(( 2 * ${#SITES[@]} )))
  for s in "${SITES[@]}"; do ADMIN[$s]=${ports[0]} STREAM[$s]=${ports[1]}; ports=("${ports[@]:2}"); done
  runbook_says "openssl rand -hex 32 | sudo install -m 0600 -o geosync -g geosync /dev/stdin /etc/geosync/admin.token"
  (umask 077 && openssl rand -hex 32 >"$ETC/admin.token")
  chmod 0600 "$ETC/admin.token"
  # Every site can become the source: each has listen (its own stream
  # address), sites (all the others) and topology; a replica also upstream.
  runbook_says '"listen": {"host": "0.0.0.0", "port": 7450},'
  runbook_says '"topology": "/etc/geosync/topology.json",'
  local s
  for s in "${SITES[@]}"; do
    local role_block others
    if [ "$s" = frankfurt ]; then
      role_block='"role": "source",' others='"dublin"'
    else
      role_block="\"role\": \"replica\", \"upstream\": {\"host\": \"127.0.0.1\", \"port\": ${STREAM[frankfurt]}},"
      others='"frankfurt"'
    fi
    cat >"$ETC/$s.json" <<JSON
{
  "cluster_id": "prod",
  "site": "$s",
  $role_block
  "listen": {"host": "127.0.0.1", "port": ${STREAM[$s]}},
  "sites": [$others],
  "state_dir": "$VAR/$s",
  "postgres": {"dsn": "$(dsn "$s")"},
  "spool": {"dir": "$VAR/$s/spool"},
  "tls": {"enabled": true, "ca_file": "$ETC/ca.crt",
          "cert_file": "$ETC/$s.crt", "key_file": "$ETC/$s.key"},
  "admin": {"listen": {"host": "127.0.0.1", "port": ${ADMIN[$s]}}, "token_file": "$ETC/admin.token"},
  "topology": "$ETC/topology.json",
  "heartbeat_ms": 500
}
JSON
  done
  runbook_says '{"name": "dublin",    "admin": "https://10.1.0.5:7451", "stream": "10.1.0.5:7450"}'
  cat >"$ETC/topology.json" <<JSON
{"cluster_id": "prod",
 "sites": [{"name": "frankfurt", "admin": "http://127.0.0.1:${ADMIN[frankfurt]}", "stream": "127.0.0.1:${STREAM[frankfurt]}"},
           {"name": "dublin", "admin": "http://127.0.0.1:${ADMIN[dublin]}", "stream": "127.0.0.1:${STREAM[dublin]}"}]}
JSON
}

deploy_6_source() {
  step "deploy 6: the source site: init, check-config, start"
  local out rc=0
  runbook_says 'geosyncctl init --dsn "dbname=app user=geosync"          # DDL capture, once per site database'
  runbook_says "sudo -u geosync geosyncctl check-config -c /etc/geosync/frankfurt.json"
  runbook_says "ALTER TABLE public.events ADD PRIMARY KEY (...); or ALTER TABLE public.events REPLICA IDENTITY FULL;"
  out=$("$GEOSYNCCTL" init --dsn "$(dsn frankfurt)" 2>&1) || fail "geosyncctl init: $out"
  out=$("$GEOSYNCCTL" check-config -c "$ETC/frankfurt.json") || rc=$?
  [ "$rc" = 3 ] || fail "check-config exited $rc with a table without PK: $out"
  echo "$out"
  expect_output "table named" 'FAIL  table public.events: no primary key' "$out"
  expect_output "fix" 'ALTER TABLE public.events REPLICA IDENTITY FULL' "$out"
  psql_at frankfurt "ALTER TABLE events REPLICA IDENTITY FULL"
  psql_at dublin "ALTER TABLE events REPLICA IDENTITY FULL"
  out=$("$GEOSYNCCTL" check-config -c "$ETC/frankfurt.json") || fail "check-config: $out"
  expect_output "ready" "frankfurt.json: config valid; site frankfurt is ready" "$out"
  expect_output "tls" 'ok    tls: certificate CN=frankfurt' "$out"
  runbook_says "sudo systemctl enable --now geosyncd@frankfurt"
  start_agent frankfurt
  wait_until 30 "frankfurt /readyz answers 200" \
    curl -sf "http://127.0.0.1:${ADMIN[frankfurt]}/readyz"
}

deploy_7_replica() {
  step "deploy 7: a replica site: check-config with the topology, start"
  local out
  runbook_says "sudo -u geosync geosyncctl check-config -c /etc/geosync/dublin.json --topology /etc/geosync/topology.json"
  runbook_says "ok    site frankfurt (https://10.0.0.5:7451): GET /healthz answered 200"
  # DDL capture on the replica's database too: it may become the source.
  out=$("$GEOSYNCCTL" init --dsn "$(dsn dublin)" 2>&1) || fail "geosyncctl init dublin: $out"
  out=$("$GEOSYNCCTL" check-config -c "$ETC/dublin.json" --topology "$ETC/topology.json") ||
    fail "check-config dublin: $out"
  echo "$out"
  expect_output "upstream" "ok    upstream 127.0.0.1:${STREAM[frankfurt]}: TLS handshake done, server certificate CN=frankfurt" "$out"
  expect_output "peer" 'ok    site frankfurt \(http://127.0.0.1:[0-9]+\): GET /healthz answered 200' "$out"
  expect_output "ready" "dublin.json: config valid; site dublin is ready" "$out"
  start_agent dublin
  wait_until 30 "dublin /readyz answers 200" curl -sf "http://127.0.0.1:${ADMIN[dublin]}/readyz"
  # Every site, with the topology, now that all run.
  for s in "${SITES[@]}"; do
    out=$("$GEOSYNCCTL" check-config -c "$ETC/$s.json" --topology "$ETC/topology.json") ||
      fail "check-config $s after start: $out"
  done
}

deploy_8_smoke() {
  step "deploy 8: a write on the source reaches the replica"
  psql_at frankfurt "INSERT INTO accounts SELECT g, 'owner ' || g, g * 10 FROM generate_series(1, 100) g"
  psql_at frankfurt "INSERT INTO events VALUES (now(), 'deployed dublin')"
  wait_until 30 "dublin has the 100 accounts" \
    test "$(psql_at dublin 'SELECT count(*) FROM accounts')" = 100
  wait_until 30 "dublin has the event" \
    test "$(psql_at dublin "SELECT count(*) FROM events WHERE what = 'deployed dublin'")" = 1
}

# ---- Daily checks ------------------------------------------------------------------
daily_1_status() {
  step "daily 1: geosyncctl status --topology"
  local out
  runbook_says "geosyncctl status --topology /etc/geosync/topology.json"
  out=$("$GEOSYNCCTL" status --topology "$ETC/topology.json") || fail "status exited $?: $out"
  echo "$out"
  expect_output "header" '^cluster prod at ' "$out"
  expect_output "columns" '^SITE +ROLE +EPOCH +STATE ' "$out"
  expect_output "source row" '^frankfurt +source +[0-9]+ +streaming ' "$out"
  expect_output "replica row" '^dublin +replica +[0-9]+ +streaming ' "$out"
  out=$("$GEOSYNCCTL" status --topology "$ETC/topology.json" --format json)
  python3 -c 'import json,sys; d=json.load(sys.stdin); assert d' <<<"$out" ||
    fail "status --format json is not JSON: $out"
}

daily_2_metrics() {
  step "daily 2: /metrics and /readyz of each site"
  local out code
  runbook_says "grep -E '^geosync_replay_lag_(bytes|seconds)'"
  out=$(curl -sf "http://127.0.0.1:${ADMIN[dublin]}/metrics") || fail "GET /metrics"
  expect_output "replay lag" '^geosync_replay_lag_bytes\{site="dublin"\} [0-9]' "$out"
  expect_output "replay lag s" '^geosync_replay_lag_seconds\{site="dublin"\} [0-9]' "$out"
  for s in "${SITES[@]}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${ADMIN[$s]}/readyz")
    [ "$code" = 200 ] || fail "$s /readyz answered $code"
  done
}

daily_3_check_config() {
  step "daily 3: check-config on every site"
  local s out
  for s in "${SITES[@]}"; do
    out=$("$GEOSYNCCTL" check-config -c "$ETC/$s.json" --topology "$ETC/topology.json") ||
      fail "check-config $s: $out"
    expect_output "ready" "config valid; site $s is ready" "$out"
  done
}

# ---- Planned switchover, emergency failover, rejoin ---------------------------------
ctl_promote() {  # ctl_promote SUBCOMMAND ARGS...: with the runbook's topology and token
  "$GEOSYNCCTL" "$@" --topology "$ETC/topology.json" --token-file "$ETC/admin.token"
}
# expect_roles SOURCE REPLICA EPOCH: geosyncctl status shows SOURCE as the
# source and REPLICA streaming from it, both at EPOCH (polled: the demoted site
# restarts as a replica).
expect_roles() {
  local src=$1 rep=$2 epoch=$3
  wait_until 30 "status: $src source, $rep replica, epoch $epoch, both streaming" \
    bash -c "out=\$('$GEOSYNCCTL' status --topology '$ETC/topology.json') &&
      grep -Eq '^$src +source +$epoch +streaming ' <<<\"\$out\" &&
      grep -Eq '^$rep +replica +$epoch +streaming ' <<<\"\$out\""
  "$GEOSYNCCTL" status --topology "$ETC/topology.json"
}
# writes_flow FROM TO TAG: a row written on FROM reaches TO; the other site's
# database refuses application writes.
writes_flow() {
  local from=$1 to=$2 tag=$3 out
  local n=0 i
  psql_at "$from" "INSERT INTO events VALUES (now(), '$tag')"
  for i in $(seq 1 100); do
    n=$(psql_at "$to" "SELECT count(*) FROM events WHERE what = '$tag'")
    [ "$n" = 1 ] && break
    sleep 0.3
  done
  [ "$n" = 1 ] || fail "$to has $n row(s) '$tag' after 30 s (expected 1); $from has \
$(psql_at "$from" "SELECT count(*) FROM events WHERE what = '$tag'"); status:
$("$GEOSYNCCTL" status --topology "$ETC/topology.json" 2>&1)"
  out=$(psql_at "$to" "INSERT INTO events VALUES (now(), 'on the replica')" 2>&1) &&
    fail "$to (replica) accepted an application write"
  expect_output "$to read-only" 'cannot execute INSERT in a read-only transaction' "$out"
}

switchover_1_check() {
  step "switchover 1: before the window: status, dry run"
  local out
  runbook_says "geosyncctl switchover --to dublin --topology /etc/geosync/topology.json --token-file /etc/geosync/admin.token --dry-run"
  out=$(ctl_promote switchover --to dublin --dry-run 2>&1) || fail "switchover --dry-run exited $?: $out"
  echo "$out"
  expect_output "dry run" 'dry run: nothing changed' "$out"
  runbook_says "dry run: nothing changed"
}

switchover_2_run() {
  step "switchover 2: geosyncctl switchover --to dublin"
  local out t0=$SECONDS
  runbook_says "geosyncctl switchover --to dublin --topology /etc/geosync/topology.json --token-file /etc/geosync/admin.token --yes"
  out=$(ctl_promote switchover --to dublin --yes 2>&1) || fail "switchover to dublin exited $?: $out"
  echo "$out"
  echo "(switchover took $((SECONDS - t0)) s)"
  expect_output "complete" 'switchover complete: dublin is the source at epoch 2' "$out"
  expect_output "unavailable" 'writes were unavailable for' "$out"
  runbook_says "switchover complete: dublin is the source at epoch 2"
  expect_roles dublin frankfurt 2
  writes_flow dublin frankfurt 'written on dublin'
}

switchover_3_back() {
  step "switchover 3: and back: geosyncctl switchover --to frankfurt"
  local out
  runbook_says "geosyncctl switchover --to frankfurt --topology /etc/geosync/topology.json --token-file /etc/geosync/admin.token --yes"
  out=$(ctl_promote switchover --to frankfurt --yes 2>&1) || fail "switchover to frankfurt exited $?: $out"
  echo "$out"
  expect_output "complete" 'switchover complete: frankfurt is the source at epoch 3' "$out"
  runbook_says "switchover complete: frankfurt is the source at epoch 3"
  expect_roles frankfurt dublin 3
  writes_flow frankfurt dublin 'written on frankfurt again'
}

failover_1_lost() {
  step "failover 1: frankfurt is lost; failover refuses while it answers"
  local out rc=0
  # Not in the runbook: the loss of frankfurt's site, its agent and its
  # PostgreSQL killed at once (nothing was being written).
  out=$(ctl_promote failover --to dublin --yes 2>&1) || rc=$?
  echo "$out"
  [ "$rc" = 8 ] || fail "failover while frankfurt answers exited $rc, expected 8: $out"
  expect_output "refused" 'frankfurt still answers' "$out"
  runbook_says "frankfurt still answers"
  kill -KILL "${PID[frankfurt]}"
  wait "${PID[frankfurt]}" 2>/dev/null || true
  unset 'PID[frankfurt]'
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$T/pg-frankfurt/data" -m immediate stop >/dev/null
  rc=0
  out=$("$GEOSYNCCTL" status --topology "$ETC/topology.json") || rc=$?
  echo "$out"
  [ "$rc" = 5 ] || fail "status with frankfurt lost exited $rc, expected 5"
  expect_output "frankfurt unreachable" '^frankfurt +- +- +unreachable .*Connection refused' "$out"
}

failover_2_run() {
  step "failover 2: geosyncctl failover --to dublin"
  local out
  runbook_says "geosyncctl failover --to dublin --topology /etc/geosync/topology.json --token-file /etc/geosync/admin.token --dry-run"
  out=$(ctl_promote failover --to dublin --dry-run 2>&1) || fail "failover --dry-run exited $?: $out"
  echo "$out"
  expect_output "loss shown" 'potential data loss' "$out"
  expect_output "dry run" 'dry run: nothing changed' "$out"
  runbook_says "geosyncctl failover --to dublin --topology /etc/geosync/topology.json --token-file /etc/geosync/admin.token --yes"
  out=$(ctl_promote failover --to dublin --yes 2>&1) || fail "failover to dublin exited $?: $out"
  echo "$out"
  expect_output "complete" 'dublin is the source at epoch 4' "$out"
  runbook_says "dublin is the source at epoch 4"
  psql_at dublin "INSERT INTO events VALUES (now(), 'written on dublin after the failover')"
}

rejoin_1_fenced() {
  step "rejoin 1: frankfurt returns and fences itself"
  local out
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$T/pg-frankfurt/data" -l "$T/pg-frankfurt/server.log" -w start >/dev/null ||
    fail "pg_ctl start frankfurt"
  start_agent frankfurt
  runbook_says "sudo systemctl start geosyncd@frankfurt"
  wait_until 30 "status shows frankfurt fenced" \
    bash -c "'$GEOSYNCCTL' status --topology '$ETC/topology.json' | grep -Eq '^frankfurt +fenced '"
  out=$("$GEOSYNCCTL" status --topology "$ETC/topology.json") || true
  echo "$out"
  expect_output "frankfurt fenced" '^frankfurt +fenced ' "$out"
  runbook_says "frankfurt  fenced"
  out=$(psql_at frankfurt "INSERT INTO events VALUES (now(), 'stale primary')" 2>&1) &&
    fail "fenced frankfurt accepted a write"
  expect_output "read-only" 'read-only transaction' "$out"
}

rejoin_2_run() {
  step "rejoin 2: geosyncctl rejoin --site frankfurt"
  local out
  runbook_says "geosyncctl rejoin --site frankfurt --topology /etc/geosync/topology.json --token-file /etc/geosync/admin.token --dry-run"
  out=$(ctl_promote rejoin --site frankfurt --dry-run 2>&1) || fail "rejoin --dry-run exited $?: $out"
  echo "$out"
  runbook_says "geosyncctl rejoin --site frankfurt --topology /etc/geosync/topology.json --token-file /etc/geosync/admin.token --yes"
  out=$(ctl_promote rejoin --site frankfurt --yes 2>&1) || fail "rejoin frankfurt exited $?: $out"
  echo "$out"
  expect_output "rejoined" 'rejoin complete: frankfurt is a replica of dublin' "$out"
  runbook_says "rejoin complete: frankfurt is a replica of dublin"
  expect_roles dublin frankfurt 4
  wait_until 30 "frankfurt has the row written on dublin after the failover" \
    test "$(psql_at frankfurt "SELECT count(*) FROM events WHERE what = 'written on dublin after the failover'")" = 1
  writes_flow dublin frankfurt 'written on dublin after the rejoin'
}

rejoin_3_back() {
  step "rejoin 3: switch back to frankfurt (section 3)"
  local out
  out=$(ctl_promote switchover --to frankfurt --yes 2>&1) || fail "switchover to frankfurt exited $?: $out"
  echo "$out"
  expect_output "complete" 'switchover complete: frankfurt is the source at epoch 5' "$out"
  runbook_says "switchover complete: frankfurt is the source at epoch 5"
  expect_roles frankfurt dublin 5
  writes_flow frankfurt dublin 'written on frankfurt after the rejoin'
}

# A returning old primary that committed what the new source never received:
# rejoin exports it and refuses (exit 8) until the site is re-seeded. Run last:
# frankfurt cannot come back without a re-seed (geosyncctl seed, being built).
rejoin_4_divergent() {
  step "rejoin 4: an old primary with divergent transactions must be re-seeded"
  local out rc=0
  # Not in the runbook: dublin's agent is down while frankfurt commits a
  # transaction, then frankfurt's site is lost before dublin receives it.
  kill -TERM "${PID[dublin]}"
  wait "${PID[dublin]}" || fail "geosyncd dublin did not exit cleanly on SIGTERM"
  unset 'PID[dublin]'
  psql_at frankfurt "INSERT INTO events VALUES (now(), 'lost with frankfurt')"
  kill -KILL "${PID[frankfurt]}"
  wait "${PID[frankfurt]}" 2>/dev/null || true
  unset 'PID[frankfurt]'
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$T/pg-frankfurt/data" -m immediate stop >/dev/null
  start_agent dublin  # its source is gone: /healthz, never /readyz
  wait_until 30 "dublin /healthz answers 200" curl -sf "http://127.0.0.1:${ADMIN[dublin]}/healthz"
  out=$(ctl_promote failover --to dublin --yes 2>&1) || fail "failover to dublin exited $?: $out"
  echo "$out"
  expect_output "complete" 'dublin is the source at epoch 6' "$out"
  "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$T/pg-frankfurt/data" -l "$T/pg-frankfurt/server.log" -w start >/dev/null ||
    fail "pg_ctl start frankfurt"
  start_agent frankfurt
  wait_until 30 "status shows frankfurt fenced" \
    bash -c "'$GEOSYNCCTL' status --topology '$ETC/topology.json' | grep -Eq '^frankfurt +fenced '"
  out=$(ctl_promote rejoin --site frankfurt --yes 2>&1) || rc=$?
  echo "$out"
  [ "$rc" = 8 ] || fail "rejoin of a diverged frankfurt exited $rc, expected 8: $out"
  expect_output "re-seed" 're-seeded' "$out"
  runbook_says "must be re-seeded"
  local sql=$VAR/frankfurt/rejoin/divergent-e5.sql
  [ -f "$sql" ] || fail "rejoin did not write $sql"
  cat "$sql"
  grep -q 'lost with frankfurt' "$sql" || fail "$sql does not hold the lost transaction"
  runbook_says "/var/lib/geosync/frankfurt/rejoin/divergent-e5.sql"
  out=$("$GEOSYNCCTL" status --topology "$ETC/topology.json") || true
  echo "$out"
  expect_output "still fenced" '^frankfurt +fenced ' "$out"
}

# ---- Drills --------------------------------------------------------------------------
drill_today_replica_outage() {
  step "drill: a replica site's agent is down, then catches up"
  runbook_says "sudo systemctl stop geosyncd@dublin"
  kill -TERM "${PID[dublin]}"  # stands in for: systemctl stop geosyncd@dublin
  wait "${PID[dublin]}" || fail "geosyncd dublin did not exit cleanly on SIGTERM"
  unset 'PID[dublin]'
  local out rc=0
  out=$("$GEOSYNCCTL" status --topology "$ETC/topology.json") || rc=$?
  echo "$out"
  [ "$rc" = 5 ] || fail "status with dublin down exited $rc, expected 5"
  expect_output "dublin unreachable" '^dublin +- +- +unreachable .*Connection refused' "$out"
  psql_at frankfurt "INSERT INTO accounts SELECT g, 'drill', 0 FROM generate_series(101, 150) g"
  start_agent dublin  # systemctl start geosyncd@dublin
  wait_until 30 "dublin /readyz answers 200" curl -sf "http://127.0.0.1:${ADMIN[dublin]}/readyz"
  wait_until 30 "dublin caught up with the 50 rows written while it was down" \
    test "$(psql_at dublin "SELECT count(*) FROM accounts WHERE owner = 'drill'")" = 50
  out=$("$GEOSYNCCTL" status --topology "$ETC/topology.json") || fail "status after the drill: $out"
  expect_output "dublin streaming" '^dublin +replica +[0-9]+ +streaming ' "$out"
}
drill_rehearsal() {
  step "drill: geosyncctl drill --site dublin (a rolled-back rehearsal on the replica)"
  local out
  runbook_says "geosyncctl drill --history"
  runbook_says "geosyncctl drill --site dublin --topology /etc/geosync/topology.json --token-file /etc/geosync/admin.token --probe"
  out=$(cd "$T" && ctl_promote drill --site dublin --probe "SELECT count(*) FROM accounts" 2>&1) ||
    fail "drill exited $?: $out"
  echo "$out"
  expect_output "passed" '^drill passed: time until writable on the frozen replica [0-9.]+ s; data at risk \(RPO\) [0-9]+ transaction' "$out"
  runbook_says "drill passed: time until writable on the frozen replica"
  ls "$T"/geosync-drills/drill-dublin-*.json >/dev/null 2>&1 || fail "drill wrote no report in ./geosync-drills"
  out=$(cd "$T" && "$GEOSYNCCTL" drill --history 2>&1) || fail "drill --history exited $?: $out"
  echo "$out"
  wait_until 30 "dublin still has the 50 drill rows and streams" \
    test "$(psql_at dublin "SELECT count(*) FROM accounts WHERE owner = 'drill'")" = 50
}

# ---- the runbook, in order ----------------------------------------------------------
declare -A MAKING
mapfile -t PORTS < <(free_port ${#SITES[@]})
for i in "${!SITES[@]}"; do
  s=${SITES[$i]}; PGPORT[$s]=${PORTS[$i]}; make_cluster "$s" & MAKING[$s]=$!
done
for s in "${SITES[@]}"; do wait "${MAKING[$s]}" || fail "PostgreSQL for $s"; done
deploy_1_install
deploy_2_postgres
deploy_3_schema
deploy_4_certs
deploy_5_config
deploy_6_source
deploy_7_replica
deploy_8_smoke
daily_1_status
daily_2_metrics
daily_3_check_config
switchover_1_check
switchover_2_run
switchover_3_back
failover_1_lost
failover_2_run
rejoin_1_fenced
rejoin_2_run
rejoin_3_back
drill_today_replica_outage
drill_rehearsal
rejoin_4_divergent
echo
echo "PASS: the runbook's deploy, daily-check, switchover, failover, rejoin and drill commands work in order ($SECONDS s)"
