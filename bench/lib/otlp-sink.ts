import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OtlpSink {
  /** For OTEL_EXPORTER_OTLP_ENDPOINT (the exporters append /v1/traces, /v1/metrics, /v1/logs). */
  url: string;
  /** Export requests received (all signals). */
  requests(): number;
  close(): Promise<void>;
}

/**
 * A loopback OTLP/HTTP receiver that accepts every export and keeps nothing: 200 with an empty
 * body, which OTLP/HTTP (spec §OTLP/HTTP Response) reads as full success in either encoding.
 * Benchmark 1's tracing variants export to it, so their cost includes building, serialising and
 * sending the batches, as in production, but no collector competes for the measured CPU.
 */
export function startOtlpSink(): Promise<OtlpSink> {
  let received = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (req.method === 'POST') received++;
      res.writeHead(req.method === 'POST' ? 200 : 405, { 'content-length': '0' }).end();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () =>
      resolve({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        requests: () => received,
        close: () =>
          new Promise((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      }),
    );
  });
}
