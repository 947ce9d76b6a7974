#!/usr/bin/env bash
# The Debian package as a DBA gets it: cpack builds geosync_*.deb from the
# build tree, dpkg installs it into a throwaway root (its own admin dir; the
# maintainer scripts run with DPKG_ROOT, so the CI machine is untouched), the
# files land where docs/runbook.md says, the postinst creates the `geosync`
# user once even when installed twice, the packaged geosyncctl runs,
# systemd-analyze accepts the unit, and purge removes the files.
# `cmake --install` gives the same layout. Usage: deb_test.sh BUILD_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
T=$(mktemp -d /tmp/geosync-deb-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

step "cpack -G DEB"
cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$T/out" >"$T/cpack.log" 2>&1 ||
  { cat "$T/cpack.log"; fail "cpack failed"; }
debs=("$T"/out/geosync_*.deb)
[ -f "${debs[0]}" ] || { cat "$T/cpack.log"; fail "no geosync_*.deb in $T/out"; }
DEB=${debs[0]}
echo "built $(basename "$DEB") ($(du -k "$DEB" | cut -f1) kB)"

step "control fields"
[ "$(dpkg-deb --field "$DEB" Package)" = geosync ] || fail "Package is not geosync"
depends=$(dpkg-deb --field "$DEB" Depends)
echo "Depends: $depends"
for lib in libpq5 libssl3 libzstd1 passwd; do
  grep -q "\b$lib\b" <<<"$depends" || fail "Depends lacks $lib"
done
# (grep reads captured output: with pipefail, grep -q on a pipe can SIGPIPE the writer)
info=$(dpkg-deb --info "$DEB")
grep -q ' postinst' <<<"$info" || fail "no postinst in the package"

step "dpkg -i into a throwaway root"
R=$T/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/log" "$R/etc"
touch "$R/var/lib/dpkg/status"
# A minimal user database for the postinst's groupadd/useradd --prefix.
printf 'root:x:0:0:root:/root:/bin/bash\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"
printf 'root:*:19000:0:99999:7:::\n' >"$R/etc/shadow"
printf 'root:*::\n' >"$R/etc/gshadow"
chmod 0640 "$R/etc/shadow" "$R/etc/gshadow"
# --force-depends: the throwaway root has no libpq5 etc. registered (the
# host's libraries serve the binaries); Depends is checked above instead.
install_deb() {
  dpkg --root="$R" --force-script-chrootless --force-depends --force-unsafe-io \
    -i "$DEB" >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "dpkg -i failed"; }
}
install_deb
st=$(dpkg --root="$R" -s geosync)
grep -q '^Status: install ok installed' <<<"$st" ||
  fail "dpkg does not list geosync as installed"
for f in usr/bin/geosyncd usr/bin/geosyncctl usr/share/geosync/make-certs.sh \
         usr/share/geosync/schemas/config.schema.json usr/share/geosync/schemas/topology.schema.json \
         usr/share/geosync/schemas/ddl_capture.sql usr/share/geosync/monitoring/geosync-alerts.yml \
         usr/share/doc/geosync/runbook.md \
         usr/share/doc/geosync/configuration.md usr/lib/systemd/system/geosyncd@.service \
         usr/lib/systemd/system/geosync-drill@.service usr/lib/systemd/system/geosync-drill@.timer; do
  [ -e "$R/$f" ] || fail "/$f not installed"
done
[ -x "$R/usr/bin/geosyncd" ] || fail "geosyncd is not executable"

step "postinst: user, config dir, state dir"
grep -q '^geosync:x:[0-9]*:[0-9]*:[^:]*:/var/lib/geosync:/usr/sbin/nologin$' "$R/etc/passwd" ||
  fail "no geosync system user: $(cat "$R/etc/passwd")"
uid=$(awk -F: '$1=="geosync"{print $3}' "$R/etc/passwd")
[ "$uid" -lt 1000 ] || fail "geosync uid $uid is not a system uid"
gid=$(awk -F: '$1=="geosync"{print $3}' "$R/etc/group")
[ "$(stat -c '%a %u %g' "$R/etc/geosync")" = "750 0 $gid" ] ||
  fail "/etc/geosync is $(stat -c '%a %u %g' "$R/etc/geosync"), expected 750 0 $gid"
[ "$(stat -c '%a %u' "$R/var/lib/geosync")" = "750 $uid" ] ||
  fail "/var/lib/geosync is $(stat -c '%a %u' "$R/var/lib/geosync")"

step "reinstall is idempotent"
install_deb
[ "$(grep -c '^geosync:' "$R/etc/passwd")" = 1 ] || fail "geosync user added twice"
[ "$(grep -c '^geosync:' "$R/etc/group")" = 1 ] || fail "geosync group added twice"

step "the packaged binaries run"
"$R/usr/bin/geosyncctl" --help >"$T/help.txt" || fail "geosyncctl --help exited $?"
grep -q check-config "$T/help.txt" || fail "geosyncctl --help does not list check-config"
ver=$("$R/usr/bin/geosyncd" --version) || fail "geosyncd --version exited $?"
grep -q '^geosyncd [0-9]' <<<"$ver" || fail "geosyncd --version printed: $ver"

step "systemd-analyze verify geosyncd@dublin.service"
# verify resolves ExecStart= on the host: render the unit with the installed
# copy's path, keep everything else.
U=$T/units
mkdir -p "$U"
sed "s#/usr/bin/geosyncd#$R/usr/bin/geosyncd#g" "$R/usr/lib/systemd/system/geosyncd@.service" \
  >"$U/geosyncd@.service"
grep -q '^User=geosync$' "$U/geosyncd@.service" || fail "unit does not run as geosync"
grep -q '^RestartPreventExitStatus=.*\b6\b' "$U/geosyncd@.service" ||
  fail "unit would restart a fenced (exit 6) agent"
out=$(cd "$U" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$U/geosyncd@dublin.service" 2>&1) ||
  { echo "$out"; fail "systemd-analyze verify rejected the unit"; }
# Unknown keys and bad values are only warnings: the unit must produce none.
[ -z "$out" ] || { echo "$out"; fail "systemd-analyze verify warned"; }
sed "s#$R/usr/bin/geosyncd#/nonexistent/geosyncd#g" "$U/geosyncd@.service" >"$U/bad@.service"
if (cd "$U" && systemd-analyze verify "$U/bad@x.service" >/dev/null 2>&1); then
  fail "systemd-analyze verify accepted a unit whose binary is missing: the check proves nothing"
fi

step "systemd-analyze verify geosync-drill@dublin.timer and its service"
sed "s#/usr/bin/geosyncctl#$R/usr/bin/geosyncctl#g" \
  "$R/usr/lib/systemd/system/geosync-drill@.service" >"$U/geosync-drill@.service"
cp "$R/usr/lib/systemd/system/geosync-drill@.timer" "$U/"
grep -q -- '--site %i' "$U/geosync-drill@.service" || fail "the drill unit does not drill its instance"
out=$(cd "$U" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$U/geosync-drill@dublin.service" \
  "$U/geosync-drill@dublin.timer" 2>&1) ||
  { echo "$out"; fail "systemd-analyze verify rejected the drill units"; }
[ -z "$out" ] || { echo "$out"; fail "systemd-analyze verify warned on the drill units"; }
next=$(systemd-analyze calendar 'Mon *-*-* 03:00:00' 2>&1) || fail "the timer's OnCalendar does not parse: $next"
grep -q "OnCalendar=Mon \*-\*-\* 03:00:00" "$U/geosync-drill@.timer" || fail "timer schedule changed: update this test"

# The hardening: systemd's own exposure score, 0 (locked down) to 10 (none);
# --threshold=20 fails above 2.0 (the unit scores about 1.4, a bare service 9.6).
out=$(cd "$U" && systemd-analyze security --offline=true --threshold=20 "$U/geosyncd@dublin.service" 2>&1) ||
  { echo "$out" | tail -25; fail "systemd-analyze security: the unit's exposure is above 2.0"; }
grep -E 'Overall exposure level' <<<"$out"

step "dpkg --purge"
dpkg --root="$R" --force-script-chrootless --purge geosync >"$T/dpkg.log" 2>&1 ||
  { cat "$T/dpkg.log"; fail "dpkg --purge failed"; }
[ ! -e "$R/usr/bin/geosyncd" ] || fail "purge left /usr/bin/geosyncd"
[ -d "$R/etc/geosync" ] || fail "purge removed /etc/geosync (keys, configs must stay)"

step "cmake --install"
cmake --install "$BUILD" --prefix "$T/inst" >"$T/install.log" 2>&1 ||
  { cat "$T/install.log"; fail "cmake --install failed"; }
for f in bin/geosyncd bin/geosyncctl share/geosync/schemas/config.schema.json \
         share/doc/geosync/runbook.md lib/systemd/system/geosyncd@.service; do
  [ -e "$T/inst/$f" ] || fail "cmake --install: $f missing"
done
echo "PASS"
