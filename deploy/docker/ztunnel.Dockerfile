# syntax=docker/dockerfile:1
# The ztunnel image: `ambientd ztunnel`, the node proxy (deploy/daemonset.yaml, DaemonSet ztunnel).
#
# Build from the repository root:  docker build -f deploy/docker/ztunnel.Dockerfile -t ambient-node/ztunnel:0.1.0 .
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
LABEL org.opencontainers.image.title="ambient-node ztunnel" \
      org.opencontainers.image.description="ztunnel, the node proxy (ambientd ztunnel)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
COPY --from=deps /app/node_modules /app/node_modules
COPY --from=build /src/package.json /app/package.json
COPY --from=build /src/bin/ambientd /app/bin/ambientd
COPY --from=build /src/proto /app/proto
COPY --from=build /src/dist/src /app/dist/src
COPY --from=build /src/build/ambient_sys.node /app/build/ambient_sys.node
# ztunnel's defaults are relative paths, as upstream's (./var/run/secrets/tokens/istio-token,
# ./var/run/secrets/istio/root-cert.pem): the working directory must be /.
WORKDIR /
ENTRYPOINT ["/app/bin/ambientd"]
CMD ["ztunnel"]
