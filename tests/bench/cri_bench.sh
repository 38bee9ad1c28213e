#!/bin/bash
# CRI benchmark: hull daemon vs Debian's containerd (CRI plugin, runc), one
# after the other in one run, with the same Rust CRI client
# (examples/cri_bench.rs): per-step latency of a pod's life cycle for 1 and
# for N concurrent pods, the daemon's RSS idle and with 10 pods, and the
# per-pod processes' memory (hull: holder + monitor; containerd: shim +
# pause), then exec in a running container: ExecSync and streaming exec
# (Exec RPC + SPDY/3.1 at its URL, as crictl exec) latency, and streaming
# exec throughput (MiB/s of stdout). Both runtimes get their own socket,
# state and image dirs, the fixture image, host-network pods (no CNI in
# either) and SIGKILL stops.
#
#   tests/bench/cri_bench.sh     (make bench runs it)
#
# Environment: CRI_BENCH_PODS=20 (concurrent pods), CRI_BENCH_ROUNDS=10,
# CRI_BENCH_EXEC_ITERS=100 (execs of each kind), CRI_BENCH_EXEC_MB=256
# (stdout of the throughput exec), HULL (default target/<host triple>/release/hull),
# CRI_BENCH_CLIENT (default target/<host triple>/release/examples/cri_bench), BENCH_OUT
# (default target/bench).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
. "$REPO/tests/bench/common.sh"
RELEASE=$(release_dir)
HULL=${HULL:-$RELEASE/hull}
CLIENT=${CRI_BENCH_CLIENT:-$RELEASE/examples/cri_bench}
PODS=${CRI_BENCH_PODS:-20}
ROUNDS=${CRI_BENCH_ROUNDS:-10}
EXEC_ITERS=${CRI_BENCH_EXEC_ITERS:-100}
EXEC_MB=${CRI_BENCH_EXEC_MB:-256}
OUT=${BENCH_OUT:-$REPO/target/bench}
LAYOUT=$REPO/target/fixtures/image-layout
mkdir -p "$OUT"

if [ "$(id -u)" -ne 0 ]; then echo "cri bench: must run as root" >&2; exit 1; fi
for t in containerd ctr umoci "$CLIENT" "$HULL"; do
    command -v "$t" >/dev/null 2>&1 || [ -x "$t" ] || { echo "cri bench: $t missing (make setup; make build)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/hull-cri-bench.XXXXXX)
CTD_PID=""; HULL_PID=""
# cgroups the two runtimes make (hull: hull/, containerd: k8s.io/): those
# new after the run and empty are removed if a failed run left them.
cgroups() { find /sys/fs/cgroup/*/hull /sys/fs/cgroup/*/k8s.io -mindepth 1 -type d 2>/dev/null | sort || true; }
cgroups > "$W/cgroups.before"
cleanup() {
    [ -n "$HULL_PID" ] && kill "$HULL_PID" 2>/dev/null && wait "$HULL_PID" 2>/dev/null || true
    [ -n "$CTD_PID" ] && kill "$CTD_PID" 2>/dev/null && wait "$CTD_PID" 2>/dev/null || true
    # Whatever a failed run left: containers of both, then mounts, then dirs.
    pkill -9 -f "$W" 2>/dev/null || true
    # hull's sandbox holders do not name the dirs: their pids are in the
    # daemon's sandbox records (each checked to be a holder before the kill).
    local pid
    for pid in $(python3 -c 'import json,sys
for f in sys.argv[1:]:
    h = json.load(open(f)).get("holder")
    if h: print(h["pid"])' "$W"/hull/state/sandboxes/*/sandbox.json 2>/dev/null); do
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q sandbox-holder && kill -9 "$pid" 2>/dev/null || true
    done
    grep " $W" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    cgroups | comm -13 "$W/cgroups.before" - | sort -r | xargs -r rmdir 2>/dev/null || true
    rm -rf "$W" 2>/dev/null || true
}
trap cleanup EXIT

wait_socket() { # path, seconds
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do [ -S "$1" ] && return 0; sleep 0.1; done
    echo "cri bench: no socket at $1" >&2; return 1
}

# The image both runtimes run, and a pause image for containerd's sandboxes
# (the fixture image with `sleep` as its command; no registry is reachable).
cp -a "$LAYOUT" "$W/layout"
umoci config --image "$W/layout:hull-test:latest" --tag hull-test:pause \
    --config.entrypoint sleep --config.cmd 2147483647 >/dev/null
# containerd's CRI plugin finds images by their normalised names: import
# just these two, named so.
python3 - "$W/layout/index.json" <<'PY'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
keep = []
for m in d["manifests"]:
    name = m.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
    if name in ("hull-test:latest", "hull-test:pause"):
        m["annotations"]["org.opencontainers.image.ref.name"] = "docker.io/library/" + name
        keep.append(m)
d["manifests"] = keep
json.dump(d, open(p, "w"))
PY
tar -C "$W/layout" -cf "$W/images.tar" .

# containerd with its CRI plugin, on dirs of its own.
C=$W/containerd; mkdir -p "$C/cni"
cat > "$C/config.toml" <<EOF
version = 2
root = "$C/root"
state = "$C/state"
[grpc]
  address = "$C/sock"
[ttrpc]
  address = "$C/sock.ttrpc"
[debug]
  address = "$C/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/library/hull-test:pause"
  # This machine lacks CAP_SYS_RESOURCE: the pause container's -998 fails.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$C/cni"
EOF
containerd --config "$C/config.toml" >"$C/log" 2>&1 &
CTD_PID=$!
wait_socket "$C/sock" 30
timeout 120 ctr --address "$C/sock" -n k8s.io images import "$W/images.tar" >/dev/null

# hull daemon, on dirs of its own.
H=$W/hull; mkdir -p "$H/no-cni"
timeout 120 "$HULL" --image-root "$H/images" image import "$LAYOUT" >/dev/null
"$HULL" --root "$H/run" --log "$H/daemon.log" daemon --socket "$H/sock" --state-dir "$H/state" \
    --image-root "$H/images" --cni-conf-dir "$H/no-cni" --log-level warn &
HULL_PID=$!
wait_socket "$H/sock" 30

echo "== CRI: $PODS concurrent pods, $ROUNDS rounds (hull daemon vs containerd $(containerd --version | awk '{print $3}') + runc)"
EXEC=(--exec-iters "$EXEC_ITERS" --exec-mb "$EXEC_MB")
timeout 1200 "$CLIENT" --socket "$H/sock" --label hull --image hull-test:latest --pods "$PODS" --rounds "$ROUNDS" \
    --daemon-pid "$HULL_PID" --overhead hull "${EXEC[@]}" --out "$OUT/cri-hull.json" >/dev/null
timeout 1200 "$CLIENT" --socket "$C/sock" --label containerd --image docker.io/library/hull-test:latest --pods "$PODS" \
    --rounds "$ROUNDS" --daemon-pid "$CTD_PID" --overhead containerd-shim-runc-v2 --overhead 2147483647 \
    "${EXEC[@]}" --out "$OUT/cri-containerd.json" >/dev/null

python3 - "$OUT/cri-hull.json" "$OUT/cri-containerd.json" <<'EOF'
import json, sys
h, c = (json.load(open(p)) for p in sys.argv[1:3])
steps = ["RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer",
         "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"]
print(f"{'step':18} {'hull p50':>9} {'p99':>8} {'ctrd p50':>9} {'p99':>8} {'ratio':>6} | "
      f"{'hull N p50':>10} {'p99':>8} {'ctrd N p50':>10} {'p99':>8} {'ratio':>6}")
for s in steps:
    a, b = h["steps"][s], c["steps"][s]
    print(f"{s:18} {a['p50_ms']:8.1f}ms {a['p99_ms']:6.1f}ms {b['p50_ms']:8.1f}ms {b['p99_ms']:6.1f}ms "
          f"{a['p50_ms']/b['p50_ms']:6.2f} | {a['concurrent_p50_ms']:9.1f}ms {a['concurrent_p99_ms']:6.1f}ms "
          f"{b['concurrent_p50_ms']:9.1f}ms {b['concurrent_p99_ms']:6.1f}ms "
          f"{a['concurrent_p50_ms']/b['concurrent_p50_ms']:6.2f}")
hm, cm = h["memory"], c["memory"]
mib = lambda k: k / 1024
print(f"daemon RSS idle: hull {mib(hm['daemon_rss_idle_kib']):.1f} MiB, containerd {mib(cm['daemon_rss_idle_kib']):.1f} MiB; "
      f"with 10 pods: {mib(hm['daemon_rss_10_pods_kib']):.1f} / {mib(cm['daemon_rss_10_pods_kib']):.1f} MiB")
print(f"per pod (Pss): hull {mib(hm['per_pod_overhead_pss_kib']):.2f} MiB in {hm['per_pod_processes']:.0f} processes "
      f"(holder + monitor), containerd {mib(cm['per_pod_overhead_pss_kib']):.2f} MiB in {cm['per_pod_processes']:.0f} "
      f"(shim + pause); ratio {hm['per_pod_overhead_pss_kib']/max(cm['per_pod_overhead_pss_kib'],1):.2f}")
he, ce = h["exec"], c["exec"]
print(f"exec, {he['iters']} of each ({'hull p50':>9} {'p99':>8} {'ctrd p50':>9} {'p99':>8} {'ratio':>6}):")
for k, what in (("ExecSync", "ExecSync true"), ("Exec", "streaming exec true")):
    a, b = he["latency"][k], ce["latency"][k]
    print(f"  {what:21} {a['p50_ms']:8.1f}ms {a['p99_ms']:6.1f}ms {b['p50_ms']:8.1f}ms {b['p99_ms']:6.1f}ms "
          f"{a['p50_ms']/b['p50_ms']:6.2f}")
print(f"  streaming exec stdout ({he['stream_mb']} MiB, best of 3): hull {he['stream_mib_per_s']:.0f} MiB/s, "
      f"containerd {ce['stream_mib_per_s']:.0f} MiB/s; ratio {he['stream_mib_per_s']/ce['stream_mib_per_s']:.2f}")
EOF
