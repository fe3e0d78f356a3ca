import { exchangeCode, obtainCode } from '../../test/support/oauth-steps.ts';
import { serveWorker } from '../lib/procs.ts';
import { DEV_USERS } from '../lib/users.ts';

/**
 * Benchmark 5's client: complete sign-ins over HTTP, as an MCP client and a user's browser do
 * them: DCR register → /authorize → consent (allow) → dev IdP login → /callback → consent as the
 * signed-in user (allow; a new client has no stored approval) → /token.
 */
async function signInOnce(baseUrl: string): Promise<void> {
  const user = DEV_USERS[0]!;
  const { clientId, code, verifier } = await obtainCode(baseUrl, { user: { login: user.login, password: user.password } });
  const response = await exchangeCode(baseUrl, { code, verifier, clientId, resource: `${baseUrl}/mcp` });
  if (response.status !== 200) throw new Error(`token: ${response.status} ${await response.text()}`);
  const body = (await response.json()) as { access_token?: string };
  if (!body.access_token) throw new Error('no access token');
}

serveWorker({}, async (message) => {
  const baseUrl = String(message['url']);
  const concurrency = Number(message['concurrency']);
  const seconds = Number(message['seconds']);
  await signInOnce(baseUrl); // warm-up
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        await signInOnce(baseUrl);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { count: latencies.length, perSecond: latencies.length / elapsed, p50: latencies[Math.floor(latencies.length / 2)] ?? Number.NaN, elapsed };
});
