import { createServer, request as httpRequest, type Server } from 'node:http';

/**
 * A loopback forwarder that adds `Authorization` and changes nothing else (Host and Origin
 * included): the conformance CLI has no header option.
 */
export async function startTokenForwarder(port: number, target: string, token: string): Promise<Server> {
  const server = createServer((req, res) => {
    const upstream = httpRequest(`${target}${req.url}`, { method: req.method, headers: { ...req.headers, authorization: `Bearer ${token}` } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}
