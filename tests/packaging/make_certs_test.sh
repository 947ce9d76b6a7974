#!/usr/bin/env bash
# scripts/make-certs.sh: a CA, a certificate per site with CN = the site name
# and EKU serverAuth + clientAuth (what geosyncd's mutual TLS needs, see
# agent/net/peer_stream.cpp), a client-only admin certificate; a second run
# keeps the CA and adds sites; bad names are refused.
# Usage: make_certs_test.sh SOURCE_DIR
set -euo pipefail
SCRIPT=$1/scripts/make-certs.sh
T=$(mktemp -d /tmp/geosync-certs-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$SCRIPT" "$T/c" frankfurt dublin >"$T/log" 2>&1 || { cat "$T/log"; fail "make-certs failed"; }
for f in ca.crt ca.key frankfurt.crt frankfurt.key dublin.crt dublin.key admin.crt admin.key; do
  [ -s "$T/c/$f" ] || fail "$f missing"
done
[ "$(stat -c %a "$T/c/ca.key")" = 600 ] || fail "ca.key is not 0600"

for site in frankfurt dublin; do
  for purpose in sslserver sslclient; do
    out=$(openssl verify -purpose "$purpose" -CAfile "$T/c/ca.crt" "$T/c/$site.crt" 2>&1) ||
      fail "$site.crt does not verify as $purpose: $out"
  done
  subject=$(openssl x509 -in "$T/c/$site.crt" -noout -subject -nameopt RFC2253)
  [ "$subject" = "subject=CN=$site" ] || fail "$site.crt has $subject"
  eku=$(openssl x509 -in "$T/c/$site.crt" -noout -ext extendedKeyUsage)
  grep -q "TLS Web Server Authentication, TLS Web Client Authentication" <<<"$eku" ||
    fail "$site.crt EKU: $eku"
  # The key belongs to the certificate.
  [ "$(openssl x509 -in "$T/c/$site.crt" -noout -pubkey)" = \
    "$(openssl pkey -in "$T/c/$site.key" -pubout)" ] || fail "$site.key does not match"
done
openssl verify -purpose sslclient -CAfile "$T/c/ca.crt" "$T/c/admin.crt" >/dev/null ||
  fail "admin.crt is not a client certificate"
if openssl verify -purpose sslserver -CAfile "$T/c/ca.crt" "$T/c/admin.crt" >/dev/null 2>&1; then
  fail "admin.crt must not be usable as a server certificate"
fi

# A mutual TLS handshake between two site certificates, each side verifying
# the other (-Verify: the server demands the client's certificate). -www: the
# server answers one HTTP request and does not read stdin.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
openssl s_server -accept "127.0.0.1:$port" -naccept 1 -www -Verify 2 -verify_return_error \
  -CAfile "$T/c/ca.crt" -cert "$T/c/frankfurt.crt" -key "$T/c/frankfurt.key" \
  </dev/null >"$T/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
  grep -q ACCEPT "$T/server.log" && break  # s_server prints it once listening
  sleep 0.1
done
out=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -connect "127.0.0.1:$port" \
  -verify_return_error -CAfile "$T/c/ca.crt" -cert "$T/c/dublin.crt" -key "$T/c/dublin.key" \
  -brief 2>&1) || { kill "$server" 2>/dev/null || true; cat "$T/server.log"; fail "mutual TLS handshake failed: $out"; }
wait "$server" || true
grep -q "Verification: OK" <<<"$out" || fail "client did not verify frankfurt: $out"
grep -q "Peer certificate: CN = frankfurt" <<<"$out" || fail "unexpected server: $out"
grep -q "depth=0 CN = dublin" "$T/server.log" || fail "server did not verify dublin: $(cat "$T/server.log")"

ca_before=$(openssl x509 -in "$T/c/ca.crt" -noout -fingerprint -sha256)
dublin_before=$(openssl x509 -in "$T/c/dublin.crt" -noout -fingerprint -sha256)
"$SCRIPT" "$T/c" dublin lisbon >"$T/log" 2>&1 || { cat "$T/log"; fail "second run failed"; }
[ "$ca_before" = "$(openssl x509 -in "$T/c/ca.crt" -noout -fingerprint -sha256)" ] ||
  fail "second run replaced the CA"
[ "$dublin_before" = "$(openssl x509 -in "$T/c/dublin.crt" -noout -fingerprint -sha256)" ] ||
  fail "second run replaced dublin.crt"
openssl verify -CAfile "$T/c/ca.crt" "$T/c/lisbon.crt" >/dev/null || fail "lisbon.crt"

if "$SCRIPT" "$T/c" "bad name" >/dev/null 2>&1; then fail "accepted a name with a space"; fi
if "$SCRIPT" "$T/c" admin >/dev/null 2>&1; then fail "accepted the reserved name admin"; fi
if "$SCRIPT" "$T/c" >/dev/null 2>&1; then fail "accepted no site"; fi
echo PASS
