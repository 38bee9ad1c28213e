#!/bin/bash
# hull demo: generate a spec, point it at the busybox fixture rootfs, and run a
# shell script in the container that shows who/where it is.
#
#   examples/demo.sh            (or: make demo)
#
# Env: HULL (default target/<host triple>/release/hull), HULL_TEST_ROOTFS (default
# target/fixtures/rootfs, built by `make fixtures`). Must run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

HULL=${HULL:-$PWD/target/$(rustc -vV | sed -n "s/^host: //p")/release/hull}
ROOTFS=${HULL_TEST_ROOTFS:-$PWD/target/fixtures/rootfs}
ID="demo-$$"

[ -x "$HULL" ] || command -v "$HULL" >/dev/null || { echo "demo: $HULL not found (make build)" >&2; exit 1; }
[ -f "$ROOTFS/.complete" ] || { echo "demo: $ROOTFS missing (make fixtures)" >&2; exit 1; }
ROOTFS=$(readlink -f "$ROOTFS")

TMP=$(mktemp -d /tmp/hull-demo.XXXXXX)
cleanup() {
    "$HULL" --root "$TMP/state" delete --force "$ID" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

mkdir -p "$TMP/bundle" "$TMP/state"
(cd "$TMP/bundle" && "$HULL" spec)

read -r -d '' SCRIPT <<'SH' || true
echo "hostname:   $(hostname)"
echo "id:         $(id)"
echo "pid:        $$"
echo "namespaces:"
for ns in /proc/self/ns/*; do
    printf '  %-18s %s\n' "${ns##*/}" "$(readlink "$ns")"
done
echo "mounts:"
while read -r dev mnt type opts rest; do
    printf '  %-22s %-8s %s\n' "$mnt" "$type" "$opts"
done < /proc/self/mounts
SH

jq --arg rootfs "$ROOTFS" --arg script "$SCRIPT" '
    .process.args = ["/bin/sh", "-c", $script]
  | .process.terminal = false
  | .hostname = "hull-demo"
  | .root.path = $rootfs
  | .root.readonly = true
  | .linux.namespaces |= (if any(.[]; .type == "uts") then . else . + [{"type": "uts"}] end)
' "$TMP/bundle/config.json" > "$TMP/bundle/config.json.new"
mv "$TMP/bundle/config.json.new" "$TMP/bundle/config.json"

echo "host namespaces (for comparison):"
for ns in /proc/self/ns/*; do
    printf '  %-18s %s\n' "${ns##*/}" "$(readlink "$ns")"
done
echo
echo "+ $HULL --root $TMP/state run --bundle $TMP/bundle $ID"
rc=0
"$HULL" --root "$TMP/state" run --bundle "$TMP/bundle" "$ID" < /dev/null || rc=$?
echo "container exited with status $rc"
exit "$rc"
