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
# Node 24 runs the TypeScript sources as they are (type stripping; tsconfig erasableSyntaxOnly).
ENTRYPOINT ["node", "src/cli.ts"]
CMD ["serve", "--config", "/config/gateway.yaml"]
