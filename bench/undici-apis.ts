import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { Pool } from 'undici';

/**
 * Which undici API forwards a small call for the least CPU (the choice behind src/proxy/forward.ts):
 * `Pool#dispatch` with a handler, `pool.request` and `pool.stream`, against a node:http backend in
 * its own process, 16 calls in flight, interleaved rounds; prints this process's CPU µs per call.
 * Run: `node bench/undici-apis.ts`.
 */
const BACKEND = `
const body = Buffer.from('{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hello"}]}}');
require('node:http').createServer((req, res) => { req.resume(); req.on('end', () => {
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }); res.end(body); }); })
  .listen(0, '127.0.0.1', function () { console.log(this.address().port); });`;
const ROUNDS = 5;
const CALLS = 10_000;
const CONCURRENCY = 16;

const child = spawn(process.execPath, ['-e', BACKEND], { stdio: ['ignore', 'pipe', 'inherit'] });
const port = await new Promise<number>((resolve) => child.stdout.once('data', (data) => resolve(Number(String(data)))));
const pool = new Pool(`http://127.0.0.1:${port}`);
const body = Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"hello"}}');
const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-functions-key': 'k', 'x-mcp-identity': 'a'.repeat(400) };
const options = () => ({ path: '/mcp', method: 'POST' as const, headers, body });

const apis: Record<string, () => Promise<unknown>> = {
  dispatch: () =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      pool.dispatch(options(), {
        onConnect() {},
        onHeaders: () => true,
        onData: (chunk: Buffer) => chunks.push(chunk) > 0,
        onComplete: () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)),
        onError: reject,
      });
    }),
  request: async () => Buffer.from(await (await pool.request(options())).body.arrayBuffer()),
  stream: () =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const sink = () => new Writable({ write: (chunk: Buffer, _encoding, callback) => callback(void chunks.push(chunk)) });
      pool.stream(options(), sink, (error) => (error ? reject(error) : resolve(Buffer.concat(chunks))));
    }),
};

async function measure(call: () => Promise<unknown>, calls: number): Promise<number> {
  let left = calls;
  const before = process.cpuUsage();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (left-- > 0) await call();
  }));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / calls;
}

for (const call of Object.values(apis)) await measure(call, 2000); // warm-up
const results: Record<string, number[]> = {};
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, call] of Object.entries(apis)) {
    results[name] ??= [];
    results[name].push(await measure(call, CALLS));
  }
}
for (const [name, values] of Object.entries(results)) {
  values.sort((a, b) => a - b);
  console.log(`${name.padEnd(9)} client CPU µs/call: median ${values[ROUNDS >> 1]!.toFixed(1)}, min ${values[0]!.toFixed(1)}`);
}
child.kill();
await pool.close();
