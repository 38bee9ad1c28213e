# hull — project tasks. Run as root on Debian 12 (bookworm).
#
#   make setup     install the Debian packages the project needs, and a default
#                  CNI config if /etc/cni/net.d has none (idempotent)
#   make build     cargo build --release
#   make fixtures  build the busybox test rootfs into target/fixtures/rootfs
#                  and an OCI image layout from it (target/fixtures/image-layout)
#   make test      setup + fixtures, then cargo test
#   make bench     hull vs runc vs crun benchmark (BENCH_ITERS=100 by default),
#                  then image pull + unpack: hull vs containerd's ctr, then
#                  the CRI: hull daemon vs containerd's CRI plugin
#   make demo      run the example pod (examples/pod.yaml) with target/release/hull
#   make clean     cargo clean + remove generated fixtures

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
FIXTURES_DIR := $(CURDIR)/target/fixtures
ROOTFS := $(FIXTURES_DIR)/rootfs
IMAGE_LAYOUT := $(FIXTURES_DIR)/image-layout
HULL := $(CURDIR)/target/release/hull

# Debian packages needed to build, test, benchmark and demo hull.
# (gcc and pkg-config: linker and library lookup for cargo builds.)
# (docker-registry, skopeo, umoci, zstd: the image tests' local registry,
#  pushes and fixture image; containerd: `ctr image pull` in the bench.)
DEB_PACKAGES := busybox-static runc crun jq libseccomp-dev protobuf-compiler \
	iproute2 util-linux python3 gcc pkg-config containernetworking-plugins iptables \
	docker-registry skopeo umoci zstd containerd

# Pod networking: if the CNI config dir holds no network config, setup
# installs hull's default (bridge hull0 + host-local 10.88.0.0/16 + portmap;
# hull brings lo up itself with the loopback plugin).
CNI_CONF_DIR ?= /etc/cni/net.d
CNI_DEFAULT_CONFLIST := examples/cni/10-hull.conflist

export HULL_TEST_ROOTFS := $(ROOTFS)

.PHONY: all setup build fixtures test bench demo clean

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
	fi

build:
	$(CARGO) build --release

fixtures: setup
	rootfs-fixtures/build-rootfs.sh $(ROOTFS)
	rootfs-fixtures/build-image.sh $(ROOTFS) $(IMAGE_LAYOUT)

test: setup fixtures
	HULL_TEST_ROOTFS=$(ROOTFS) $(CARGO) test -- --test-threads=4

bench: setup fixtures build
	tests/bench/bench.sh
	HULL=$(HULL) tests/bench/image_bench.sh
	$(CARGO) build --release --example cri_bench
	HULL=$(HULL) tests/bench/cri_bench.sh

demo: setup fixtures build
	HULL=$(HULL) HULL_TEST_ROOTFS=$(ROOTFS) examples/demo.sh

clean:
	$(CARGO) clean || true
	rm -rf $(FIXTURES_DIR) target/bench
