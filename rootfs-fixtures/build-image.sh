#!/bin/bash
# Build an OCI image layout from the busybox rootfs, for hull's image tests.
#
#   rootfs-fixtures/build-image.sh ROOTFS OUT
#
# OUT is an OCI image layout (oci-layout, index.json, blobs/sha256/) with:
#   - ref "hull-test:latest": an image of three layers
#       1. the busybox rootfs                       (tar+gzip)
#       2. /etc/hull-release, /opt/data/{a,b}, /opt/remove-me,
#          /opt/hardlink (a hard link to /opt/data/a)  (tar+gzip)
#       3. /opt/.wh.remove-me (whiteout), /opt/data/.wh..wh..opq (opaque
#          dir) with /opt/data/c, and /etc/hull-release replaced (tar+zstd)
#     so a correct unpack shows /opt/data/c only, no /opt/remove-me, and
#     /etc/hull-release = "layer3";
#   - ref "hull-test:gzip": the same image with layer 3 gzip-compressed
#     (same config and diff ids), and "hull-test:multi-gzip" its index, which
#     tools that write Docker schema2 (no zstd) can convert;
#   - ref "hull-test:multi": an image index with that manifest for this host's
#     platform and a second manifest for another architecture (its config
#     says so; it shares the layers), to test platform selection.
# The config sets Entrypoint, Cmd, Env, WorkingDir and User.
# Idempotent (skips when OUT/.complete is newer than this script) and atomic
# (built in OUT.tmp.$$, then renamed). Needs tar, gzip, zstd, jq, sha256sum.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 ROOTFS OUT" >&2
    exit 2
fi
ROOTFS=${1%/}
OUT=${2%/}
SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")

if [ -f "$OUT/.complete" ] && [ "$OUT/.complete" -nt "$SCRIPT" ] && [ "$OUT/.complete" -nt "$ROOTFS/.complete" ]; then
    echo "image layout $OUT is up to date"
    exit 0
fi
for tool in tar gzip zstd jq sha256sum; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (make setup)" >&2; exit 1; }
done
[ -x "$ROOTFS/bin/busybox" ] || { echo "error: $ROOTFS is not the busybox rootfs (make fixtures)" >&2; exit 1; }

TMP="$OUT.tmp.$$"
STAGE="$OUT.stage.$$"
cleanup() { rm -rf "$TMP" "$STAGE"; }
trap cleanup EXIT
rm -rf "$TMP" "$STAGE"
mkdir -p "$TMP/blobs/sha256" "$STAGE"

sha() { sha256sum "$1" | cut -d' ' -f1; }
# blob FILE: move FILE into the layout, print its hex digest.
blob() {
    local h
    h=$(sha "$1")
    mv "$1" "$TMP/blobs/sha256/$h"
    echo "$h"
}
TARFLAGS=(--sort=name --mtime=@1700000000 --numeric-owner --owner=0 --group=0 --format=pax --pax-option=delete=atime,delete=ctime)

# layer DIR COMPRESSOR MEDIATYPE: prints "diffid digest size mediatype"
layer() {
    local dir=$1 comp=$2 mt=$3 raw="$STAGE/layer.tar" diff d
    tar "${TARFLAGS[@]}" -C "$dir" -cf "$raw" .
    diff=$(sha "$raw")
    $comp < "$raw" > "$raw.c"
    rm "$raw"
    local size
    size=$(stat -c %s "$raw.c")
    d=$(blob "$raw.c")
    echo "$diff $d $size $mt"
}

L1=$(layer "$ROOTFS" "gzip -n" application/vnd.oci.image.layer.v1.tar+gzip)

mkdir -p "$STAGE/l2/etc" "$STAGE/l2/opt/data"
echo layer2 > "$STAGE/l2/etc/hull-release"
echo a > "$STAGE/l2/opt/data/a"
echo b > "$STAGE/l2/opt/data/b"
echo gone > "$STAGE/l2/opt/remove-me"
ln "$STAGE/l2/opt/data/a" "$STAGE/l2/opt/hardlink"
L2=$(layer "$STAGE/l2" "gzip -n" application/vnd.oci.image.layer.v1.tar+gzip)

mkdir -p "$STAGE/l3/etc" "$STAGE/l3/opt/data"
echo layer3 > "$STAGE/l3/etc/hull-release"
: > "$STAGE/l3/opt/.wh.remove-me"
: > "$STAGE/l3/opt/data/.wh..wh..opq"
echo c > "$STAGE/l3/opt/data/c"
L3=$(layer "$STAGE/l3" "zstd -q -c" application/vnd.oci.image.layer.v1.tar+zstd)
# The same layer gzip-compressed (same diff id): for the all-gzip variant.
L3G=$(layer "$STAGE/l3" "gzip -n" application/vnd.oci.image.layer.v1.tar+gzip)

case "$(uname -m)" in
    x86_64) ARCH=amd64; OTHER=arm64 ;;
    aarch64) ARCH=arm64; OTHER=amd64 ;;
    *) ARCH=$(uname -m); OTHER=amd64 ;;
esac

# config ARCH: prints "digest size"
config() {
    jq -n -c --arg arch "$1" --arg d1 "sha256:${L1%% *}" --arg d2 "sha256:${L2%% *}" --arg d3 "sha256:${L3%% *}" '{
        created: "2023-11-14T22:13:20Z", architecture: $arch, os: "linux",
        config: {
            Entrypoint: ["/bin/sh", "-c"], Cmd: ["cat /etc/hull-release"],
            Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HULL_IMAGE=test"],
            WorkingDir: "/opt", User: "0:0", StopSignal: "SIGTERM",
            Labels: {"org.example.fixture": "hull"}
        },
        rootfs: {type: "layers", diff_ids: [$d1, $d2, $d3]},
        history: [{created_by: "busybox rootfs"}, {created_by: "layer 2"}, {created_by: "layer 3: whiteout, opaque dir"}]
    }' > "$STAGE/config.json"
    local s
    s=$(stat -c %s "$STAGE/config.json")
    echo "$(blob "$STAGE/config.json") $s"
}

desc() { # "diffid digest size mediatype" -> descriptor json
    set -- $1
    jq -n -c --arg d "sha256:$2" --argjson s "$3" --arg mt "$4" '{mediaType: $mt, digest: $d, size: $s}'
}

# manifest CONFIG_DIGEST CONFIG_SIZE [LAYER3]: prints "digest size"
manifest() {
    jq -n -c --arg cd "sha256:$1" --argjson cs "$2" \
        --argjson l1 "$(desc "$L1")" --argjson l2 "$(desc "$L2")" --argjson l3 "$(desc "${3:-$L3}")" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
        layers: [$l1, $l2, $l3]
    }' > "$STAGE/manifest.json"
    local s
    s=$(stat -c %s "$STAGE/manifest.json")
    echo "$(blob "$STAGE/manifest.json") $s"
}

read -r HOSTCFG HOSTCFGSIZE <<< "$(config "$ARCH")"
read -r HOSTMAN HOSTMANSIZE <<< "$(manifest "$HOSTCFG" "$HOSTCFGSIZE")"
read -r OTHERCFG OTHERCFGSIZE <<< "$(config "$OTHER")"
read -r OTHERMAN OTHERMANSIZE <<< "$(manifest "$OTHERCFG" "$OTHERCFGSIZE")"
read -r GZMAN GZMANSIZE <<< "$(manifest "$HOSTCFG" "$HOSTCFGSIZE" "$L3G")"
read -r OTHERGZMAN OTHERGZMANSIZE <<< "$(manifest "$OTHERCFG" "$OTHERCFGSIZE" "$L3G")"

# index HOST_MANIFEST HOST_SIZE OTHER_MANIFEST OTHER_SIZE: prints "digest size"
index() {
    jq -n -c --arg h "sha256:$1" --argjson hs "$2" --arg arch "$ARCH" \
        --arg o "sha256:$3" --argjson os "$4" --arg other "$OTHER" '{
        schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
            {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $o, size: $os, platform: {os: "linux", architecture: $other}},
            {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $h, size: $hs, platform: {os: "linux", architecture: $arch}}
        ]
    }' > "$STAGE/index.json"
    local s
    s=$(stat -c %s "$STAGE/index.json")
    echo "$(blob "$STAGE/index.json") $s"
}
read -r INDEX INDEXSIZE <<< "$(index "$HOSTMAN" "$HOSTMANSIZE" "$OTHERMAN" "$OTHERMANSIZE")"
read -r GZINDEX GZINDEXSIZE <<< "$(index "$GZMAN" "$GZMANSIZE" "$OTHERGZMAN" "$OTHERGZMANSIZE")"

echo '{"imageLayoutVersion":"1.0.0"}' > "$TMP/oci-layout"
jq -n --arg m "sha256:$HOSTMAN" --argjson ms "$HOSTMANSIZE" --arg i "sha256:$INDEX" --argjson is "$INDEXSIZE" \
    --arg g "sha256:$GZMAN" --argjson gs "$GZMANSIZE" --arg gi "sha256:$GZINDEX" --argjson gis "$GZINDEXSIZE" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: [
        {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
         annotations: {"org.opencontainers.image.ref.name": "hull-test:latest"}},
        {mediaType: "application/vnd.oci.image.index.v1+json", digest: $i, size: $is,
         annotations: {"org.opencontainers.image.ref.name": "hull-test:multi"}},
        {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $g, size: $gs,
         annotations: {"org.opencontainers.image.ref.name": "hull-test:gzip"}},
        {mediaType: "application/vnd.oci.image.index.v1+json", digest: $gi, size: $gis,
         annotations: {"org.opencontainers.image.ref.name": "hull-test:multi-gzip"}}
    ]
}' > "$TMP/index.json"
# For tests: the digests they expect.
jq -n --arg m "sha256:$HOSTMAN" --arg c "sha256:$HOSTCFG" --arg o "sha256:$OTHERMAN" --arg i "sha256:$INDEX" \
    '{manifest: $m, config: $c, other_manifest: $o, index: $i}' > "$TMP/fixture.json"
touch "$TMP/.complete"
rm -rf "$OUT"
mv "$TMP" "$OUT"
echo "image layout $OUT: hull-test:latest (3 layers), :multi (index), :gzip, :multi-gzip"
