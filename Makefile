# hull — project tasks. Run as root on Debian 12 (bookworm).
#
#   make setup     install the Debian packages the project needs, and a default
#                  CNI config if /etc/cni/net.d has none (idempotent)
#   make build     cargo build --release
#   make fixtures  build the busybox test rootfs into target/fixtures/rootfs
#                  and an OCI image layout from it (target/fixtures/image-layout)
#   make test      setup + fixtures, then cargo test, then test-v2
#   make test-v2   the cgroup v2 tests in a VM with a pure v2 kernel
#                  (tests/v2vm/; prints "skipped" and why where it cannot start)
#   make bench     hull vs runc vs crun benchmark (BENCH_ITERS=100 by default),
#                  then image pull + unpack: hull vs containerd's ctr, then
#                  the CRI: hull daemon vs containerd's CRI plugin
#                  (pod life cycle, memory, ExecSync and streaming exec)
#   make profile   where one container's create/start/delete spends its time
#                  (phases under strace, kernel floor, syscalls), peak RSS
#                  of each command and callgrind instruction counts: hull
#                  vs crun (tests/bench/profile.sh; PROFILE_ITERS=20)
#   make hot-symbols  regenerate link/hot-symbols.txt and link/hot-rodata.ld,
#                  the functions the runtime commands and a monitor run and
#                  the constants they read, which the linker puts together
#                  (tests/bench/hot_symbols.sh; see build.rs)
#   make fuzz      run every fuzz target in fuzz/ for FUZZ_SECONDS (60) each;
#                  fails on a crash (not part of make test)
#   make demo      run the example pod (examples/pod.yaml) with target/<host>/release/hull
#   make clean     cargo clean + remove generated fixtures

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
FIXTURES_DIR := $(CURDIR)/target/fixtures
ROOTFS := $(FIXTURES_DIR)/rootfs
IMAGE_LAYOUT := $(FIXTURES_DIR)/image-layout
# Binaries are under target/<host triple>/ (.cargo/config.toml: the static
# link needs an explicit target).
HOST_TRIPLE := $(shell rustc -vV 2>/dev/null | sed -n 's/^host: //p')
RELEASE_DIR := $(CURDIR)/target/$(HOST_TRIPLE)/release
HULL := $(RELEASE_DIR)/hull

# The cgroup v2 VM (tests/v2vm/): the libraries Debian's qemu-system-x86
# links against, installed; qemu itself and the 6.1 kernel are only fetched
# and unpacked into $(V2VM_DIR) by tests/v2vm/setup.sh (installing
# qemu-system-x86 would conflict with a newer qemu-utils), and xz-utils
# to extract the kernel's ELF image.
V2VM_DIR := $(CURDIR)/target/v2vm
V2VM_LIBS := libaio1 libbpf1 libcapstone4 libfdt1 libfuse3-3 libglib2.0-0 libgmp10 \
	libgnutls30 libhogweed6 libibverbs1 libjpeg62-turbo libnettle8 libnuma1 \
	libpixman-1-0 libpmem1 libpng16-16 librdmacm1 libsasl2-2 libseccomp2 libslirp0 \
	libudev1 liburing2 libvdeplug2 libzstd1 zlib1g xz-utils

# Debian packages needed to build, test, benchmark and demo hull.
# (gcc and pkg-config: linker and library lookup for cargo builds.)
# (docker-registry, skopeo, umoci, zstd: the image tests' local registry,
#  pushes and fixture image; containerd: `ctr image pull` in the bench.)
DEB_PACKAGES := busybox-static runc crun jq libseccomp-dev protobuf-compiler \
	iproute2 util-linux python3 gcc pkg-config containernetworking-plugins iptables \
	docker-registry skopeo umoci zstd containerd strace $(V2VM_LIBS)

# Pod networking: if the CNI config dir holds no network config, setup
# installs hull's default (bridge hull0 + host-local 10.88.0.0/16 + portmap;
# hull brings lo up itself with the loopback plugin).
CNI_CONF_DIR ?= /etc/cni/net.d
CNI_DEFAULT_CONFLIST := examples/cni/10-hull.conflist

export HULL_TEST_ROOTFS := $(ROOTFS)

# Fuzzing: cargo-fuzz on the stable toolchain. RUSTC_BOOTSTRAP lets stable
# rustc take the -Z sanitizer/coverage flags cargo fuzz passes. New inputs go
# to a scratch corpus under target/, seeds stay in fuzz/corpus/<target>.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := oci_config pod_manifest image_json layer_unpack hosts_toml cni_result cri_log_line
FUZZ_SCRATCH := $(CURDIR)/target/fuzz-corpus

.PHONY: all setup build fixtures test test-v2 bench profile hot-symbols demo clean fuzz

all: build

setup:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
		status=$$(dpkg -s "$$p" 2>/dev/null | sed -n 's/^Status: //p' || true); \
		if [ "$$status" != "install ok installed" ]; then \
			missing="$$missing $$p"; \
		fi; \
	done; \
	if [ -z "$$missing" ]; then \
		echo "setup: all Debian packages present"; \
	else \
		echo "setup: installing:$$missing"; \
		if [ "$$(id -u)" -ne 0 ]; then echo "setup: must run as root" >&2; exit 1; fi; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q < /dev/null; \
		apt-get install -y -q --no-install-recommends $$missing < /dev/null; \
	fi; \
	command -v $(CARGO) >/dev/null 2>&1 || \
		echo "setup: warning: '$(CARGO)' not on PATH (install Rust with rustup)" >&2; \
	if compgen -G '$(CNI_CONF_DIR)/*.conflist' >/dev/null || compgen -G '$(CNI_CONF_DIR)/*.conf' >/dev/null \
		|| compgen -G '$(CNI_CONF_DIR)/*.json' >/dev/null; then \
		echo "setup: CNI network config present in $(CNI_CONF_DIR)"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
		echo "setup: warning: no CNI config in $(CNI_CONF_DIR); run as root to install $(CNI_DEFAULT_CONFLIST)" >&2; \
	else \
		install -D -m 0644 $(CNI_DEFAULT_CONFLIST) $(CNI_CONF_DIR)/10-hull.conflist; \
		echo "setup: wrote $(CNI_CONF_DIR)/10-hull.conflist"; \
	fi; \
	tests/v2vm/setup.sh $(V2VM_DIR)

build:
	$(CARGO) build --release

fixtures: setup
	rootfs-fixtures/build-rootfs.sh $(ROOTFS)
	rootfs-fixtures/build-image.sh $(ROOTFS) $(IMAGE_LAYOUT)

test: setup fixtures
	HULL_TEST_ROOTFS=$(ROOTFS) $(CARGO) test -- --test-threads=4
	CARGO=$(CARGO) HULL_V2VM_DIR=$(V2VM_DIR) HULL_TEST_ROOTFS=$(ROOTFS) tests/v2vm/run.sh

# The guest runs the host's test binaries (built here) from a read-only view
# of the host's tree; run.sh bounds the VM's time and maps its result.
test-v2: fixtures
	CARGO=$(CARGO) HULL_V2VM_DIR=$(V2VM_DIR) HULL_TEST_ROOTFS=$(ROOTFS) tests/v2vm/run.sh

bench: setup fixtures build
	HULL=$(HULL) tests/bench/bench.sh
	HULL=$(HULL) tests/bench/image_bench.sh
	$(CARGO) build --release --example cri_bench
	HULL=$(HULL) CRI_BENCH_CLIENT=$(RELEASE_DIR)/examples/cri_bench tests/bench/cri_bench.sh

profile: setup fixtures build
	HULL=$(HULL) tests/bench/profile.sh

hot-symbols: setup fixtures
	HULL_TEST_ROOTFS=$(ROOTFS) tests/bench/hot_symbols.sh

demo: setup fixtures build
	HULL=$(HULL) HULL_TEST_ROOTFS=$(ROOTFS) examples/demo.sh

fuzz:
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_SCRATCH)/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t $(FUZZ_SCRATCH)/$$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
			|| { echo "fuzz: $$t failed; the input is in fuzz/artifacts/$$t/" >&2; exit 1; }; \
	done

clean:
	$(CARGO) clean || true
	rm -rf $(FIXTURES_DIR) target/bench
