# Baton in a container: `docker build -t baton .`, then
#   docker run --rm -p 8080:8080 -v $PWD/baton.yaml:/etc/baton/baton.yaml:ro baton
# The image's own /etc/baton/baton.yaml is examples/k8s/baton.yaml (listener on 8080, admin on 9901);
# mount yours over it (Kubernetes: the ConfigMap in examples/k8s/).

# Build: TypeScript → dist/, and the optional native splice plane (needs a compiler; the install
# script never fails without one, and Baton then runs on the JavaScript plane).
FROM node:20-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json binding.gyp ./
COPY native native
# --ignore-scripts: `prepare` (tsc) needs lib/, copied below; the addon is built explicitly.
RUN npm ci --no-audit --no-fund --ignore-scripts && node native/install.mjs
COPY tsconfig.json ./
COPY lib lib
RUN npm run build && npm prune --omit=dev --ignore-scripts && mkdir -p build/Release

# Run: the slim image of the same Node and glibc (the addon is built against them).
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    # A freed 64 KiB read buffer must not give pages back to the kernel on every read (README: "The data path").
    MALLOC_TRIM_THRESHOLD_=268435456
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY --from=build /src/build/Release build/Release
COPY examples/k8s/baton.yaml /etc/baton/baton.yaml
# The node image's unprivileged user (uid 1000). Ports below 1024 need CAP_NET_BIND_SERVICE (or
# net.ipv4.ip_unprivileged_port_start): the config listens on 8080.
USER node
EXPOSE 8080 9901
# SIGTERM: stop accepting, drain for shutdownGrace, exit 0 (give `docker stop -t` more than that).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9901/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/app/dist/cli.js"]
CMD ["--config", "/etc/baton/baton.yaml"]
