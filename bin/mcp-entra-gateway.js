#!/usr/bin/env node
// Launcher: registers tsx so the CLI runs from its TypeScript sources without a build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
