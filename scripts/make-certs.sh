#!/usr/bin/env bash
# make-certs.sh DIR SITE...: the certificates of a geosync deployment, made with
# the openssl CLI, for mutual TLS between sites (config block "tls").
#
#   DIR/ca.crt, DIR/ca.key        the deployment CA (made once, reused later)
#   DIR/SITE.crt, DIR/SITE.key    one per site: CN = SITE (the stream server
#                                 requires the peer certificate's CN to equal the
#                                 site name), EKU serverAuth + clientAuth, SAN DNS:SITE
#   DIR/admin.crt, DIR/admin.key  a client certificate (EKU clientAuth) for
#                                 operators' tools
#
# Existing files are kept: run it again with a new site name to add a site
# signed by the same CA. Keys are 0600, or 0640 group geosync when that group
# exists and we run as root. Keep ca.key off the sites (it only signs).
# Env: GEOSYNC_CERT_DAYS (default 825), GEOSYNC_CA_DAYS (default 3650),
# GEOSYNC_KEY ("ec", default: P-256; or "rsa" for RSA 3072),
# GEOSYNC_EXTRA_SAN (e.g. "IP:10.1.0.5,DNS:dublin-mgmt.example.com": added to
# the SAN of the site certificates made by this run, so that an https://
# admin URL with that address verifies; docs/security.md).
set -euo pipefail

usage() {
  echo "usage: $0 DIR SITE [SITE...]" >&2
  echo "  creates DIR/ca.{crt,key}, DIR/SITE.{crt,key} per site and DIR/admin.{crt,key}" >&2
  exit 2
}
[ "$#" -ge 2 ] || usage
case "$1" in -h|--help) usage ;; esac
DIR=$1
shift
DAYS=${GEOSYNC_CERT_DAYS:-825}
CA_DAYS=${GEOSYNC_CA_DAYS:-3650}
KEY=${GEOSYNC_KEY:-ec}

command -v openssl >/dev/null || { echo "make-certs: openssl not found (apt-get install openssl)" >&2; exit 1; }
for name in "$@"; do
  if ! [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
    echo "make-certs: bad site name '$name' (letters, digits, . _ - only)" >&2
    exit 2
  fi
  if [ "$name" = ca ] || [ "$name" = admin ]; then
    echo "make-certs: '$name' is reserved, pick another site name" >&2
    exit 2
  fi
done

mkdir -p "$DIR"
umask 077

newkey() {  # newkey FILE
  if [ "$KEY" = rsa ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out "$1" 2>/dev/null
  else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
  fi
}

keyperms() {  # keyperms FILE: readable by the agent's group
  if [ "$(id -u)" -eq 0 ] && getent group geosync >/dev/null; then
    chgrp geosync "$1"
    chmod 0640 "$1"
  else
    chmod 0600 "$1"
  fi
}

if [ ! -f "$DIR/ca.crt" ]; then
  newkey "$DIR/ca.key"
  chmod 0600 "$DIR/ca.key"
  openssl req -x509 -new -key "$DIR/ca.key" -sha256 -days "$CA_DAYS" \
    -subj "/CN=geosync deployment CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$DIR/ca.crt"
  chmod 0644 "$DIR/ca.crt"
  echo "make-certs: created CA $DIR/ca.crt"
fi

# issue NAME EKU [SAN]
issue() {
  local name=$1 eku=$2 san=${3:-}
  if [ -f "$DIR/$name.crt" ]; then
    echo "make-certs: kept existing $DIR/$name.crt"
    return
  fi
  local ext
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    echo "subjectKeyIdentifier=hash"
    echo "authorityKeyIdentifier=keyid"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$ext"
  newkey "$DIR/$name.key"
  keyperms "$DIR/$name.key"
  openssl req -new -key "$DIR/$name.key" -subj "/CN=$name" -out "$DIR/$name.csr"
  openssl x509 -req -in "$DIR/$name.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
    -CAcreateserial -sha256 -days "$DAYS" -extfile "$ext" -out "$DIR/$name.crt" 2>/dev/null
  chmod 0644 "$DIR/$name.crt"
  rm -f "$DIR/$name.csr" "$ext"
  echo "make-certs: created $DIR/$name.crt (CN=$name, $eku)"
}

for site in "$@"; do
  issue "$site" "serverAuth,clientAuth" "DNS:$site${GEOSYNC_EXTRA_SAN:+,$GEOSYNC_EXTRA_SAN}"
done
issue admin "clientAuth"
