import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { unusedGatewayVariables } from '../support/deploy-config.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const bicepFiles = ['infra/main.bicep', ...readdirSync(join(ROOT, 'infra/modules')).filter((f) => f.endsWith('.bicep')).map((f) => `infra/modules/${f}`)];
/** Bicep without `//` comments (a comment naming a parameter does not use it). */
const code = (path: string) => read(path).replace(/(^|[^:'])\/\/.*$/gm, '$1');

/** The built-in role definition ids (Azure RBAC "Azure built-in roles"), as published. */
const AZURE_BUILT_IN_ROLES = {
  AcrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d',
  KeyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7',
  KeyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6',
  StorageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe',
};

/** One `{ name: 'X', value|secretRef: … }` line per variable of the named container. */
function containerEnv(path: string, container: string): Map<string, string> {
  const text = code(path);
  const start = text.indexOf(`name: '${container}'`);
  assert.ok(start >= 0, `${path} has container ${container}`);
  const block = text.slice(start, text.indexOf('\n          ]', text.indexOf('env: [', start)));
  return new Map([...block.matchAll(/\{ name: '([A-Z0-9_]+)', (value|secretRef): (.+) \}/g)].map((m) => [m[1]!, `${m[2]}: ${m[3]}`]));
}

describe('azd template (azure.yaml, infra/)', () => {
  it('azure.yaml deploys each service from a Dockerfile that exists to the Container App tagged with its name', () => {
    const azure = parseYaml(read('azure.yaml')) as { services: Record<string, { host: string; docker: { path: string; context: string } }> };
    assert.deepEqual(Object.keys(azure.services).sort(), ['gateway', 'snippets']);
    for (const [name, service] of Object.entries(azure.services)) {
      assert.equal(service.host, 'containerapp');
      assert.ok(existsSync(join(ROOT, service.docker.context, service.docker.path)), `${name}: ${service.docker.path}`);
      assert.match(read('infra/modules/apps.bicep'), new RegExp(`'azd-service-name': '${name}'`));
    }
  });

  it('every parameter declared is used, every module and loaded file exists', () => {
    for (const file of bicepFiles) {
      const text = code(file);
      for (const [, name] of text.matchAll(/^param (\w+)/gm)) {
        const uses = text.match(new RegExp(`\\b${name}\\b`, 'g'))!.length;
        assert.ok(uses >= 2, `${file}: param ${name} is used`);
      }
      const dir = join(ROOT, file, '..');
      for (const [, path] of text.matchAll(/(?:module \w+ |load(?:Text|Json)Content\()'([^']+)'/g)) assert.ok(existsSync(join(dir, path!)), `${file}: ${path} exists`);
    }
    const parameters = JSON.parse(read('infra/main.parameters.json')) as { parameters: Record<string, unknown> };
    const declared = [...code('infra/main.bicep').matchAll(/^param (\w+)/gm)].map((m) => m[1]);
    assert.deepEqual(Object.keys(parameters.parameters).sort(), declared.sort());
  });

  it('every environment variable on the gateway container is read by the config file it mounts (or is documented as not config)', () => {
    const apps = code('infra/modules/apps.bicep');
    assert.match(apps, /\{ name: 'gateway-config', value: loadTextContent\('..\/gateway.yaml'\) \}/);
    assert.match(apps, /volumeMounts: \[\{ volumeName: 'config', mountPath: '\/config' \}\]/);
    assert.match(apps, /secrets: \[\{ secretRef: 'gateway-config', path: 'gateway.yaml' \}\]/);
    assert.match(apps, /args: \['serve', '--config', '\/config\/gateway.yaml'\]/);
    // Values of the shape Azure gives them.
    const sample: Record<string, string> = {
      GATEWAY_PUBLIC_URL: 'https://gateway-abc.kindwave-1234.westeurope.azurecontainerapps.io',
      ENTRA_TENANT_ID: '72f988bf-86f1-41af-91ab-2d7cd011db47',
      ENTRA_CLIENT_ID: '3f1c2a9e-0b7d-4c55-9a7e-2f3b4c5d6e7f',
      AZURE_CLIENT_ID: '7d1f3c2e-5b8a-4c6d-9e0f-1a2b3c4d5e6f',
      REDIS_URL: 'rediss://redis-abc.westeurope.redis.azure.net:10000',
      SNIPPETS_URL: 'https://snippets-abc.internal.kindwave-1234.westeurope.azurecontainerapps.io/mcp',
      GATEWAY_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      GATEWAY_COOKIE_KEY: randomBytes(48).toString('base64'),
      GATEWAY_SIGNING_KEY: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      SNIPPETS_KEY: randomBytes(32).toString('hex'),
      APPLICATIONINSIGHTS_CONNECTION_STRING: 'InstrumentationKey=00000000-0000-0000-0000-000000000000',
    };
    const env = containerEnv('infra/modules/apps.bicep', 'gateway');
    assert.deepEqual([...env.keys()].sort(), Object.keys(sample).sort(), 'every variable has a sample here');
    assert.deepEqual(unusedGatewayVariables(read('infra/gateway.yaml'), sample), []);
    // The gateway's secrets come from Key Vault secrets the key script makes.
    const script = read('infra/modules/generate-keys.sh');
    for (const [name, source] of env) {
      const secret = /^secretRef: '([a-z-]+)'$/.exec(source)?.[1];
      if (secret) assert.match(script, new RegExp(`^put ${secret} `, 'm'), `${name}: Key Vault secret ${secret} is generated`);
    }
  });

  it('the snippets container sets only variables the server or the Azure SDK reads', () => {
    const reads = new Set([...read('servers/snippets/main.ts').matchAll(/env\['([A-Z_]+)'\]/g)].map((m) => m[1]));
    reads.add('AZURE_CLIENT_ID'); // DefaultAzureCredential: the user-assigned identity to use
    for (const name of containerEnv('infra/modules/apps.bicep', 'snippets').keys()) assert.ok(reads.has(name), name);
  });

  it('role definition ids come only from infra/roles.json, which holds the Azure built-in ids', () => {
    const { '//': _, ...roles } = JSON.parse(read('infra/roles.json')) as Record<string, string>;
    assert.deepEqual(roles, AZURE_BUILT_IN_ROLES);
    for (const file of bicepFiles) {
      for (const [, expression] of code(file).matchAll(/roleDefinitionId: (.+)/g)) {
        assert.match(expression!, /^subscriptionResourceId\('Microsoft.Authorization\/roleDefinitions', roles\.(\w+)\)$/, `${file}: ${expression}`);
        assert.ok(expression!.replace(/.*roles\.(\w+)\)$/, '$1') in roles);
      }
      assert.doesNotMatch(code(file), /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/, `${file}: no literal ids`);
    }
  });

  it('the app registration’s redirect URI is the gateway’s callback: the same URL is its publicUrl', () => {
    const main = code('infra/main.bicep');
    assert.match(main, /var gatewayUrl = 'https:\/\/\$\{gatewayAppName\}\.\$\{environment\.outputs\.defaultDomain\}'/);
    assert.match(main, /module entraApp [\s\S]*?gatewayUrl: gatewayUrl/);
    assert.match(main, /module apps [\s\S]*?gatewayAppName: gatewayAppName\n[\s\S]*?gatewayUrl: gatewayUrl\n/);
    assert.match(code('infra/modules/entra-app.bicep'), /redirectUris: \['\$\{gatewayUrl\}\/callback'\]/);
    assert.equal(containerEnv('infra/modules/apps.bicep', 'gateway').get('GATEWAY_PUBLIC_URL'), 'value: gatewayUrl');
    assert.match(read('infra/gateway.yaml'), /^publicUrl: \{ env: GATEWAY_PUBLIC_URL \}$/m);
    // src/gateway.ts: redirect_uri = publicUrl's origin + /callback.
    assert.match(read('src/gateway.ts'), /const redirectUri = `\$\{issuer\}\/callback`;/);
    assert.match(main, /output MCP_URL string = '\$\{gatewayUrl\}\/mcp'/);
  });

  it('the gateway runs ≥ 2 replicas with liveness on /healthz (public port) and readiness on /readyz (admin port, not in the ingress)', () => {
    const apps = code('infra/modules/apps.bicep');
    const gateway = apps.slice(apps.indexOf("resource gateway '"));
    const config = parseYaml(read('infra/gateway.yaml')) as { listen: { port: number }; admin: { listen: { host: string; port: number } } };
    assert.match(gateway, new RegExp(`ingress: \\{ external: true, targetPort: ${config.listen.port},`));
    assert.match(gateway, new RegExp(`\\{ type: 'Liveness', httpGet: \\{ path: '/healthz', port: ${config.listen.port} \\}`));
    assert.match(gateway, new RegExp(`\\{ type: 'Readiness', httpGet: \\{ path: '/readyz', port: ${config.admin.listen.port} \\}`));
    assert.equal(config.admin.listen.host, '0.0.0.0');
    assert.doesNotMatch(gateway, /additionalPortMappings|exposedPort/);
    assert.ok(Number(/minReplicas: (\d+)/.exec(gateway)![1]) >= 2);
    const snippets = apps.slice(apps.indexOf("resource snippets '"), apps.indexOf("resource gateway '"));
    assert.match(snippets, /ingress: \{ external: false,/);
  });
});
