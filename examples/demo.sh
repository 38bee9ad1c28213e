#!/bin/bash
# hull demo: run examples/pod.yaml — two containers sharing an emptyDir, the
# pod's hostname and its loopback network, with memory and CPU limits — and
# show what happened. The busybox fixture rootfs stands in for the image.
#
#   make demo      (or: examples/demo.sh after `make build fixtures`)
#
# Env: HULL (default target/<host triple>/release/hull), HULL_TEST_ROOTFS (default
# target/fixtures/rootfs). Must run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

HULL=${HULL:-$PWD/target/$(rustc -vV | sed -n "s/^host: //p")/release/hull}
ROOTFS=${HULL_TEST_ROOTFS:-$PWD/target/fixtures/rootfs}
[ -x "$HULL" ] || { echo "demo: $HULL not found (make build)" >&2; exit 1; }
[ -f "$ROOTFS/.complete" ] || { echo "demo: $ROOTFS missing (make fixtures)" >&2; exit 1; }
ROOTFS=$(readlink -f "$ROOTFS")

STATE=$(mktemp -d /tmp/hull-demo.XXXXXX)
cleanup() {
    "$HULL" --root "$STATE" pod rm hull-demo >/dev/null 2>&1 || true
    rm -rf "$STATE"
}
trap cleanup EXIT

sed "s|ROOTFS|$ROOTFS|" examples/pod.yaml > "$STATE/pod.yaml"
echo "+ hull pod run examples/pod.yaml"
"$HULL" --root "$STATE" pod run --state-dir "$STATE/state" "$STATE/pod.yaml"
echo
echo "+ waiting for the pod to finish"
for _ in $(seq 1 100); do
    phase=$("$HULL" --root "$STATE" pod ps -o json hull-demo | jq -r .phase)
    case "$phase" in Succeeded|Failed) break ;; esac
    sleep 0.1
done
"$HULL" --root "$STATE" pod ps hull-demo
for c in writer reader; do
    echo
    echo "+ hull pod logs hull-demo -c $c"
    "$HULL" --root "$STATE" pod logs hull-demo -c "$c"
done
echo
echo "+ hull pod rm hull-demo"
"$HULL" --root "$STATE" pod rm hull-demo
echo "removed: no container, mount, cgroup or process of the pod is left"
[ "$phase" = Succeeded ]
