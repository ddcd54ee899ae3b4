# syntax=docker/dockerfile:1
# The install-cni image: `ambientd cni-agent`, the CNI node agent, which also installs the ambient-cni plugin on the
# node (deploy/daemonset.yaml, DaemonSet istio-cni-node). The agent runs iptables-restore, ip and nsenter in pod
# network namespaces and ipset in the host's: iptables, ipset and iproute2 are installed, nsenter is util-linux
# (essential in Debian).
#
# Build from the repository root:  docker build -f deploy/docker/install-cni.Dockerfile -t ambient-node/install-cni:0.1.0 .
# (or `make images`). Three stages: the full build (tsc, the Node-API addon, the static CNI shim), the production
# dependencies alone, and a slim Node 24 LTS runtime with only what runs: dist/src, proto/ (loaded at run time),
# the addon, bin/ambientd and the production node_modules. test/deploy/dockerfiles.test.ts assembles this
# layout from a `make build` tree and runs it.

FROM node:24-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && touch node_modules/.installed
COPY Makefile tsconfig.json ./
COPY bin ./bin
COPY proto ./proto
COPY src ./src
RUN make build

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM node:24-bookworm-slim
LABEL org.opencontainers.image.title="ambient-node install-cni" \
      org.opencontainers.image.description="the CNI node agent and plugin (ambientd cni-agent, ambient-cni)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables ipset iproute2 \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
COPY --from=deps /app/node_modules /app/node_modules
COPY --from=build /src/package.json /app/package.json
COPY --from=build /src/bin/ambientd /app/bin/ambientd
COPY --from=build /src/proto /app/proto
COPY --from=build /src/dist/src /app/dist/src
COPY --from=build /src/build/ambient_sys.node /app/build/ambient_sys.node
# The CNI plugin: a static C shim (libc only), copied by the agent into the node's CNI bin dir; it must run on a
# host without Node.
COPY --from=build /src/build/ambient-cni /opt/cni/bin/ambient-cni
WORKDIR /
ENTRYPOINT ["/app/bin/ambientd"]
CMD ["cni-agent"]
