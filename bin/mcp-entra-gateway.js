#!/usr/bin/env node
// Launcher for installs from npm: Node strips types only outside node_modules, so an installed
// copy registers tsx to run the CLI from its TypeScript sources. From a checkout (npm start,
// npm run serve, the Dockerfile) Node 24 runs src/cli.ts directly.
// Plain JavaScript that any Node parses, so an older one gets a sentence instead of a stack trace.
const MINIMUM = [22, 13]; // node:sqlite without a flag; package.json engines says the same
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < MINIMUM[0] || (major === MINIMUM[0] && minor < MINIMUM[1])) {
  process.stderr.write(`mcp-entra-gateway needs Node.js ${MINIMUM.join('.')} or newer (24 LTS recommended); this is Node.js ${process.versions.node}\n`);
  process.exit(1);
}
const { register } = await import('tsx/esm/api');
register();
await import('../src/cli.ts');
