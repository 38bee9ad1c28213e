#!/bin/bash
# Image pull benchmark: `hull image pull` vs containerd's `ctr image pull`
# (both fetch and unpack), from a local docker-registry on 127.0.0.1, of a
# multi-layer image of about 100 MB (uncompressed), cold each time.
#
#   tests/bench/image_bench.sh     (make bench runs it after bench.sh)
#
# Environment:
#   BENCH_IMAGE_ITERS=3    cold pulls per tool
#   BENCH_TIMEOUT=120      seconds allowed per pull
#   HULL                   hull binary (default target/<host triple>/release/hull)
#   BENCH_OUT=target/bench image.json is written there
# Needs root, docker-registry, skopeo, containerd (make setup). Each step is
# bounded in time; everything runs in a temp dir removed at exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
. "$REPO/tests/bench/common.sh"
ITERS=${BENCH_IMAGE_ITERS:-3}
TIMEOUT=${BENCH_TIMEOUT:-120}
HULL=${HULL:-$(release_dir)/hull}
OUT=${BENCH_OUT:-$REPO/target/bench}
ROOTFS=${HULL_TEST_ROOTFS:-$REPO/target/fixtures/rootfs}
LAYOUT=$REPO/target/fixtures/bench-image

[ "$(id -u)" -eq 0 ] || { echo "image bench: must run as root" >&2; exit 1; }
for t in docker-registry skopeo containerd ctr jq zstd; do
    command -v "$t" >/dev/null || { echo "image bench: $t missing (make setup)" >&2; exit 1; }
done
[ -x "$HULL" ] || { echo "image bench: $HULL not built" >&2; exit 1; }
[ -f "$ROOTFS/.complete" ] || timeout 300 "$REPO/rootfs-fixtures/build-rootfs.sh" "$ROOTFS"

WORK=$(mktemp -d /tmp/hull-image-bench.XXXXXX)
REG_PID=""
CTD_PID=""
stop() { # pid
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}
cleanup() {
    stop "$CTD_PID"
    stop "$REG_PID"
    # containerd's overlay snapshots may still be mounted if it died mid-way.
    { grep -o "$WORK[^ ]*" /proc/self/mounts 2>/dev/null || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the image: busybox + 4 layers (many small files, a few big ones, real
# host files, text), gzip, built once into target/fixtures/bench-image ---
if [ ! -f "$LAYOUT/.complete" ]; then
    echo "image bench: building the bench image (once)"
    T="$LAYOUT.tmp.$$"
    rm -rf "$T"
    mkdir -p "$T/blobs/sha256" "$T/l"
    layers=()
    diffs=()
    add_layer() { # dir
        tar --sort=name --mtime=@1700000000 --numeric-owner -C "$1" -cf "$T/l/layer.tar" .
        diffs+=("sha256:$(sha256sum "$T/l/layer.tar" | cut -d' ' -f1)")
        gzip -n -1 "$T/l/layer.tar"
        local h s
        h=$(sha256sum "$T/l/layer.tar.gz" | cut -d' ' -f1)
        s=$(stat -c %s "$T/l/layer.tar.gz")
        mv "$T/l/layer.tar.gz" "$T/blobs/sha256/$h"
        layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$h\",\"size\":$s}")
    }
    add_layer "$ROOTFS"
    mkdir -p "$T/l/small/data"
    for i in $(seq 1 2000); do head -c 8192 /dev/urandom | base64 > "$T/l/small/data/f$i"; done
    add_layer "$T/l/small"; rm -rf "$T/l/small"
    mkdir -p "$T/l/big/opt/big"
    for i in 1 2; do head -c 7M /dev/urandom | base64 > "$T/l/big/opt/big/blob$i"; done
    add_layer "$T/l/big"; rm -rf "$T/l/big"
    mkdir -p "$T/l/host/usr/share" "$T/l/host/usr/lib"
    cp -a /usr/share/zoneinfo "$T/l/host/usr/share/" 2>/dev/null || true
    py=$(ls -d /usr/lib/python3.* 2>/dev/null | head -1)
    if [ -n "$py" ]; then cp -a "$py" "$T/l/host/usr/lib/"; fi
    add_layer "$T/l/host"; rm -rf "$T/l/host"
    mkdir -p "$T/l/text/srv"
    head -c 10M /dev/urandom | base64 > "$T/l/text/srv/log.txt"
    add_layer "$T/l/text"; rm -rf "$T/l/text"
    arch=$(case "$(uname -m)" in x86_64) echo amd64;; aarch64) echo arm64;; *) uname -m;; esac)
    printf '%s\n' "${diffs[@]}" | jq -R . | jq -s -c --arg arch "$arch" \
        '{architecture: $arch, os: "linux", config: {Cmd: ["sh"]}, rootfs: {type: "layers", diff_ids: .}}' > "$T/l/config"
    ch=$(sha256sum "$T/l/config" | cut -d' ' -f1); cs=$(stat -c %s "$T/l/config"); mv "$T/l/config" "$T/blobs/sha256/$ch"
    (IFS=,; echo "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$ch\",\"size\":$cs},\"layers\":[${layers[*]}]}") > "$T/l/manifest"
    mh=$(sha256sum "$T/l/manifest" | cut -d' ' -f1); ms=$(stat -c %s "$T/l/manifest"); mv "$T/l/manifest" "$T/blobs/sha256/$mh"
    echo '{"imageLayoutVersion":"1.0.0"}' > "$T/oci-layout"
    echo "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$mh\",\"size\":$ms,\"annotations\":{\"org.opencontainers.image.ref.name\":\"bench:latest\"}}]}" > "$T/index.json"
    rmdir "$T/l"
    touch "$T/.complete"
    rm -rf "$LAYOUT"; mv "$T" "$LAYOUT"
fi
COMPRESSED=$(du -sb "$LAYOUT/blobs" | cut -f1)

# --- registry ---
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
REF=127.0.0.1:$PORT/bench/img:latest
timeout "$TIMEOUT" skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:bench:latest" "docker://$REF"

now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }
hull_times=()
for i in $(seq 1 "$ITERS"); do
    R="$WORK/hull-$i"
    t0=$(now)
    timeout "$TIMEOUT" "$HULL" --image-root "$R" image pull --quiet "$REF" > "$WORK/hull.out"
    t1=$(now)
    hull_times+=("$(calc "$t1 - $t0")")
    HULL_DU=$(du -sb "$R" | cut -f1)
    HULL_INODES=$(du -s --inodes "$R" | cut -f1)
    if [ "$i" -lt "$ITERS" ]; then rm -rf "$R"; fi
done
UNPACKED=$(du -sb "$R/snapshots" | cut -f1)

ctd_times=()
for i in $(seq 1 "$ITERS"); do
    C="$WORK/ctd-$i"
    mkdir -p "$C"
    cat > "$C/config.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$C/sock"
TOML
    containerd --config "$C/config.toml" > "$C/log" 2>&1 &
    CTD_PID=$!
    for _ in $(seq 1 100); do [ -S "$C/sock" ] && break; sleep 0.1; done
    sleep 0.5
    t0=$(now)
    timeout "$TIMEOUT" ctr --address "$C/sock" image pull --plain-http "$REF" > "$C/pull.log" 2>&1 || { cat "$C/pull.log" >&2; exit 1; }
    t1=$(now)
    ctd_times+=("$(calc "$t1 - $t0")")
    CTD_DU=$(du -sb "$C/root" | cut -f1)
    CTD_INODES=$(du -s --inodes "$C/root" | cut -f1)
    stop "$CTD_PID"; CTD_PID=""
    { grep -o "$C[^ ]*" /proc/self/mounts 2>/dev/null || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
    if [ "$i" -lt "$ITERS" ]; then rm -rf "$C"; fi
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
HM=$(median "${hull_times[@]}")
CM=$(median "${ctd_times[@]}")
mkdir -p "$OUT"
jq -n --argjson hull "[$(IFS=,; echo "${hull_times[*]}")]" --argjson ctr "[$(IFS=,; echo "${ctd_times[*]}")]" \
    --argjson hm "$HM" --argjson cm "$CM" --argjson hdu "$HULL_DU" --argjson cdu "$CTD_DU" \
    --argjson hi "$HULL_INODES" --argjson ci "$CTD_INODES" --argjson comp "$COMPRESSED" --argjson unp "$UNPACKED" \
    --arg hullbin "$HULL" \
    '{image: {compressed_bytes: $comp, unpacked_bytes: $unp, layers: 5}, hull_binary: $hullbin,
      hull: {seconds: $hull, median: $hm, store_bytes: $hdu, store_inodes: $hi},
      ctr: {seconds: $ctr, median: $cm, store_bytes: $cdu, store_inodes: $ci},
      ratio_time_hull_over_ctr: ($hm / $cm)}' > "$OUT/image.json"
printf 'image bench: %s layers, %.1f MB compressed, %.1f MB unpacked, %d cold pulls each\n' 5 \
    "$(calc "$COMPRESSED / 1000000")" "$(calc "$UNPACKED / 1000000")" "$ITERS"
printf '%-6s %10s %14s %10s\n' tool "median s" "store MB" inodes
printf '%-6s %10.2f %14.1f %10d\n' hull "$HM" "$(calc "$HULL_DU / 1000000")" "$HULL_INODES"
printf '%-6s %10.2f %14.1f %10d\n' ctr "$CM" "$(calc "$CTD_DU / 1000000")" "$CTD_INODES"
printf 'hull/ctr time ratio: %.2f  (results in %s)\n' "$(calc "$HM / $CM")" "$OUT/image.json"
