import { parseArgs } from 'node:util';

const SERVE_USAGE = `Usage: mcp-entra-gateway serve --config FILE

Runs the gateway from a YAML config file (docs/configuration.md). Any config key can be overridden
by an environment variable MCPGW_<PATH> with path segments joined by __, e.g. MCPGW_LISTEN__PORT=9000;
secrets are read from the variables or files the config names ({ env: NAME } or { file: PATH }).

Options:
  -c, --config FILE   the config file (YAML)
  -h, --help          this text`;

const DEV_USAGE = `Usage: mcp-entra-gateway dev [options]

Runs the whole system on embedded defaults: the gateway, the sample snippets MCP server and a dev
sign-in (an OpenID Provider with two generated users); prints the URL to paste into a client.

Options:
  --port N            gateway port (default 8080)
  --idp-port N        dev sign-in port (default 8081)
  --snippets-port N   snippets server port (default 7071)
  --admin-port N      admin listener: /metrics, /readyz (default 9464)
  --data DIR          state, secrets and snippets (default ./data)
  -h, --help          this text`;

const AUDIT_USAGE = `Usage: mcp-entra-gateway audit verify FILE [--jwks URL|FILE]

Checks an audit file: consecutive sequence numbers, each record's hash chained to the one before,
and each checkpoint's signature. With --jwks (the gateway's /.well-known/jwks.json, or a saved copy)
the checkpoints are verified; without it only the chain is. Exit 0 when intact, 1 at the first
break (named), 2 on a usage error.`;

const POLICY_USAGE = `Usage: mcp-entra-gateway policy explain --config FILE --tool NAME [options]

Prints the decision the gateway would make for one call, and the rule that made it, from the
config file's policy sections (no secrets or IdP needed). Exit 0 when allowed, 1 when denied.

Options:
  -c, --config FILE     the gateway config (YAML)
  --backend NAME        the backend (default: the first)
  --tool NAME           a tools/call of this tool (or --prompt NAME, --resource URI, --method NAME)
  --user NAME           who calls (default: someone)
  --roles A,B           the user's roles;  --groups G,H  their groups;  --scopes S,T  the token's scopes
  --client ID           the client id (default: a-client)
  --arguments JSON      the call's arguments (default: {})
  --param NAME=VALUE    an Mcp-Param-NAME header of a 2026-07-28 call, decoded (request.params; repeatable)
  --time ISO            when (default: now)`;

const USAGE = `Usage:
  mcp-entra-gateway serve --config FILE   run the gateway from a YAML config (+ MCPGW_* env overrides)
  mcp-entra-gateway dev [--port 8080] [--idp-port 8081] [--snippets-port 7071] [--admin-port 9464] [--data ./data]
                                          run gateway + sample snippets server + dev sign-in
  mcp-entra-gateway audit verify FILE [--jwks URL|FILE]
                                          check an audit file's chain and signed checkpoints
  mcp-entra-gateway policy explain --config FILE --tool NAME [--roles …]
                                          the decision and the rule for one call
  mcp-entra-gateway help                  this text; COMMAND --help for one command's`;

const HELP = { help: { type: 'boolean', short: 'h' } } as const;

async function run(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'serve') {
    const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' }, ...HELP } });
    if (values.help) return void process.stdout.write(`${SERVE_USAGE}\n`);
    const { serve } = await import('./main.ts');
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
        ...HELP,
      },
    });
    if (values.help) return void process.stdout.write(`${DEV_USAGE}\n`);
    const { dev } = await import('./main.ts');
    return dev({
      port: portOption('--port', values.port),
      idpPort: portOption('--idp-port', values['idp-port']),
      snippetsPort: portOption('--snippets-port', values['snippets-port']),
      adminPort: portOption('--admin-port', values['admin-port']),
      dataDir: values.data,
    });
  }
  if (command === 'audit') {
    const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { jwks: { type: 'string' }, ...HELP } });
    if (values.help) return void process.stdout.write(`${AUDIT_USAGE}\n`);
    const [verb, file] = positionals;
    if (verb !== 'verify' || !file || positionals.length !== 2) {
      process.stderr.write(`${AUDIT_USAGE}\n`);
      process.exitCode = 2;
      return;
    }
    const { verifyAuditCommand } = await import('./audit/verify.ts');
    process.exitCode = await verifyAuditCommand(file, values.jwks);
    return;
  }
  if (command === 'policy') return explain(rest);
  process.stdout.write(`${USAGE}\n`);
  if (command !== undefined && command !== 'help' && command !== '--help' && command !== '-h') process.exitCode = 2;
}

async function explain(args: string[]): Promise<void> {
  const list = { type: 'string', default: '' } as const;
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      backend: { type: 'string' },
      tool: { type: 'string' },
      prompt: { type: 'string' },
      resource: { type: 'string' },
      method: { type: 'string' },
      user: { type: 'string', default: 'someone' },
      roles: list,
      groups: list,
      scopes: list,
      client: { type: 'string', default: 'a-client' },
      arguments: { type: 'string', default: '{}' },
      param: { type: 'string', multiple: true, default: [] },
      time: { type: 'string' },
      ...HELP,
    },
  });
  if (values.help) return void process.stdout.write(`${POLICY_USAGE}\n`);
  const [operation, name] = values.tool !== undefined ? ['tools/call', values.tool] : values.prompt !== undefined ? ['prompts/get', values.prompt] : values.resource !== undefined ? ['resources/read', values.resource] : [values.method, ''];
  if (positionals[0] !== 'explain' || positionals.length !== 1 || !values.config || !operation) {
    process.stderr.write(`${POLICY_USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  const split = (value: string) => value.split(',').map((v) => v.trim()).filter(Boolean);
  const { explainPolicy } = await import('./policy/explain.ts');
  const result = explainPolicy(values.config, {
    backend: values.backend,
    method: operation,
    name,
    user: values.user,
    roles: split(values.roles),
    groups: split(values.groups),
    scopes: split(values.scopes).flatMap((s) => s.split(' ')),
    client: values.client,
    arguments: JSON.parse(values.arguments) as Record<string, unknown>,
    params: Object.fromEntries(values.param.map(paramOption)),
    time: values.time ? new Date(values.time) : new Date(),
  });
  process.stdout.write(`${result.lines.join('\n')}\n`);
  process.exitCode = result.allowed ? 0 : 1;
}

/** `--param Region=eu-west`: the header's name after `Mcp-Param-` (case-insensitive, so lower-cased) and its value. */
function paramOption(value: string): [string, string] {
  const at = value.indexOf('=');
  if (at <= 0) throw new Error(`--param ${value}: expected NAME=VALUE`);
  return [value.slice(0, at).toLowerCase(), value.slice(at + 1)];
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
