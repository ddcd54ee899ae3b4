# syntax=docker/dockerfile:1
# The ambient-node image: `ambientd`, every component of the mesh, chosen by the first argument. Both node
# DaemonSets run it (deploy/daemonset.yaml: `ztunnel` and `cni-agent`, so a node pulls one image), and so can
# the control plane (`control-plane`) and the waypoint Deployments it creates (`command: [ambientd]`,
# `args: [waypoint]`: /app/bin is on PATH). The CNI node agent runs iptables-restore, ip and nsenter in pod
# network namespaces and ipset in the host's: iptables, ipset and iproute2 are installed, nsenter is util-linux
# (essential in Debian). The CNI plugin is the static shim the agent copies to the node.
#
# Build from the repository root:  docker build -f deploy/docker/ambient-node.Dockerfile -t ambient-node:0.1.0 .
# (or `make images`). Three stages: the full build (tsc, the Node-API addon, the static CNI shim), the production
# dependencies alone, and a slim Node 24 LTS runtime with only what runs: dist/src, proto/ (loaded at run time),
# the addon, bin/ambientd, the shim and the production node_modules. test/deploy/dockerfiles.test.ts assembles
# this layout from a `make build` tree and runs it.

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
LABEL org.opencontainers.image.title="ambient-node" \
      org.opencontainers.image.description="Istio ambient-mode data plane in TypeScript: ztunnel, the CNI node agent and plugin, the control plane, the waypoint" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables ipset iproute2 \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    PATH=/app/bin:$PATH
COPY --from=deps /app/node_modules /app/node_modules
COPY --from=build /src/package.json /app/package.json
COPY --from=build /src/bin/ambientd /app/bin/ambientd
COPY --from=build /src/proto /app/proto
COPY --from=build /src/dist/src /app/dist/src
COPY --from=build /src/build/ambient_sys.node /app/build/ambient_sys.node
# The CNI plugin (CNI_PLUGIN_BINARY): a static C shim, libc only, that must run on a host without Node.
COPY --from=build /src/build/ambient-cni /opt/cni/bin/ambient-cni
# ztunnel's defaults are relative paths, as upstream's (./var/run/secrets/tokens/istio-token,
# ./var/run/secrets/istio/root-cert.pem): the working directory must be /.
WORKDIR /
ENTRYPOINT ["/app/bin/ambientd"]
