# The gateway. Build: docker build -t mcp-entra-gateway .
# Run:   docker run -p 8080:8080 -v /etc/mcp-entra-gateway:/config -e ... mcp-entra-gateway serve --config /config/gateway.yaml
FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY src ./src
COPY servers/snippets ./servers/snippets
USER node
EXPOSE 8080
# Admin listener (/readyz, /metrics) for probes and scrapers; set admin.listen.host: 0.0.0.0 in the
# config so they reach it, and do not publish it (docs/production.md).
EXPOSE 9464
# Node 24 runs the TypeScript sources as they are (type stripping; tsconfig erasableSyntaxOnly).
ENTRYPOINT ["node", "src/cli.ts"]
CMD ["serve", "--config", "/config/gateway.yaml"]
