# The gateway. Build: docker build -t mcp-entra-gateway .
# Run:   docker run -p 8080:8080 -v /etc/mcp-entra-gateway:/config -e ... mcp-entra-gateway serve --config /config/gateway.yaml
FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY src ./src
COPY bin ./bin
COPY servers/snippets ./servers/snippets
USER node
EXPOSE 8080
ENTRYPOINT ["node", "bin/mcp-entra-gateway.js"]
CMD ["serve", "--config", "/config/gateway.yaml"]
