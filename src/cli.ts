import { parseArgs } from 'node:util';
import { dev, serve } from './main.ts';

const USAGE = `Usage:
  mcp-entra-gateway serve --config FILE   run the gateway from a YAML config (+ MCPGW_* env overrides)
  mcp-entra-gateway dev [--port 8080] [--idp-port 8081] [--snippets-port 7071] [--admin-port 9464] [--data ./data]
                                          run gateway + sample snippets server + dev sign-in
  mcp-entra-gateway help`;

async function run(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'serve') {
    const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } } });
    return serve(values.config);
  }
  if (command === 'dev') {
    const { values } = parseArgs({
      args: rest,
      options: {
        port: { type: 'string', default: '8080' },
        'idp-port': { type: 'string', default: '8081' },
        'snippets-port': { type: 'string', default: '7071' },
        'admin-port': { type: 'string', default: '9464' },
        data: { type: 'string', default: './data' },
      },
    });
    return dev({
      port: portOption('--port', values.port),
      idpPort: portOption('--idp-port', values['idp-port']),
      snippetsPort: portOption('--snippets-port', values['snippets-port']),
      adminPort: portOption('--admin-port', values['admin-port']),
      dataDir: values.data,
    });
  }
  process.stdout.write(`${USAGE}\n`);
  if (command !== 'help' && command !== '--help') process.exitCode = 2;
}

function portOption(name: string, value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${name}: must be a port number (0-65535)`);
  return port;
}

run(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`mcp-entra-gateway: ${(error as Error).message}\n`);
  process.exit(1);
});
