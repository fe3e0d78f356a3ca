#!/usr/bin/env node
// Launcher for installs from npm: Node strips types only outside node_modules, so an installed
// copy registers tsx to run the CLI from its TypeScript sources. From a checkout (npm start,
// npm run serve, the Dockerfile) Node 24 runs src/cli.ts directly.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
