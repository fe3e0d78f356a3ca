# The gateway. Build: docker build -t mcp-entra-gateway .
# Run:   docker run -p 8080:8080 -v $PWD/config:/config:ro -v gateway-data:/var/lib/mcp-entra-gateway \
#          -e GATEWAY_ENCRYPTION_KEY -e GATEWAY_COOKIE_KEY ... mcp-entra-gateway
# (docs/production.md §3; compose.yaml runs it with Redis, the snippets server and Azurite).
FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY bin ./bin
COPY src ./src
# `dev` runs the sample snippets server in-process, so the gateway image carries its sources.
COPY servers/snippets ./servers/snippets
# The documented state directory (README: store.path /var/lib/mcp-entra-gateway/gateway.db),
# owned by the unprivileged user the gateway runs as; a volume, so state outlives the container.
RUN mkdir -p /var/lib/mcp-entra-gateway && chown node:node /var/lib/mcp-entra-gateway
VOLUME /var/lib/mcp-entra-gateway
USER node
EXPOSE 8080
# Admin listener (/readyz, /metrics) for probes and scrapers; set admin.listen.host: 0.0.0.0 in the
# config so they reach it, and do not publish it (docs/production.md).
EXPOSE 9464
# Liveness on the public port (listen.host must be 0.0.0.0 in a container); the image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node 24 runs the TypeScript sources as they are (type stripping; tsconfig erasableSyntaxOnly).
ENTRYPOINT ["node", "src/cli.ts"]
CMD ["serve", "--config", "/config/gateway.yaml"]
