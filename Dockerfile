# link-etcd sync as a container (sidecar, compose): docs/OPERATIONS.md.
#   docker build -t link-etcd:0.1.0 .
#   docker run -v link-etcd-conf:/conf -v link-etcd-state:/state link-etcd:0.1.0 \
#     --endpoints http://etcd:2379 sync --http 0.0.0.0:9477 --state-dir /state
# Node 22 (LTS) runs the package, which needs Node >= 20.19.
ARG NODE_IMAGE=node:22-bookworm-slim

# Compile TypeScript with the dev dependencies.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Runtime dependencies only, from a clean install rather than a prune, so no
# dev package or build leftover can reach the image.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="link-etcd" \
      org.opencontainers.image.description="Two-way sync between a directory of .conf files and etcd v3" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"

# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only check a number,
# and bind-mounted or pre-created conf dirs can be chowned to it.
# /conf and /state belong to it so fresh named volumes start writable.
RUN groupadd --system --gid 10001 link-etcd \
 && useradd --system --uid 10001 --gid link-etcd --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin link-etcd \
 && mkdir -p /conf /state \
 && chown link-etcd:link-etcd /conf /state \
 && chmod 0750 /conf /state

WORKDIR /app
# Owned by root and read-only to the daemon. package.json carries
# "type": "module", which Node needs to load dist/ as ESM.
COPY package.json LICENSE ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# tsc does not set the executable bit; the shebang is `#!/usr/bin/env node`.
# Node follows the symlink, so dist/ finds node_modules from /app.
RUN chmod 0755 dist/cli/main.js \
 && ln -s /app/dist/cli/main.js /usr/local/bin/link-etcd

# STATE_DIRECTORY is the daemon's first default for --state-dir (as under
# systemd), so a command line that omits the flag still uses the volume.
ENV B3J0F_CONF_DIR=/conf \
    STATE_DIRECTORY=/state
USER 10001:10001
VOLUME ["/conf", "/state"]
EXPOSE 9477
# The daemon handles SIGTERM itself (it is PID 1 here): writes in flight are
# finished and the base saved. Give it time: docker stop -t 30.
STOPSIGNAL SIGTERM
# No curl in the image: Node's fetch. Liveness only (/readyz is 503 while etcd
# is unreachable, which a restart would not fix). Assumes --http on port 9477.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9477/healthz',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["link-etcd"]
CMD ["sync", "--http", "0.0.0.0:9477", "--state-dir", "/state"]
