import type { IncomingHttpHeaders } from 'node:http';
import { pipeline } from 'node:stream';
import type { Enforcer, Subject } from '../policy/enforce.ts';
import { type BackendResponse, isEventStream } from './forward.ts';
import { readBounded } from './relay.ts';

/** A JSON list answer too large to pass whole is read up to this to be filtered. */
const LIST_ANSWER_MAX_BYTES = 16 * 1024 * 1024;

/**
 * The backend's answer to a POST with its list results filtered for this caller: a JSON answer
 * is rewritten whole, an SSE answer event by event as it streams (src/policy/enforce.ts).
 */
export async function filterAnswer(
  enforcer: Enforcer,
  subject: Subject,
  response: BackendResponse,
  options: { privateCache: boolean; timeoutMs: number },
): Promise<BackendResponse> {
  const contentType = response.headers['content-type'];
  if (isEventStream(contentType) && !Buffer.isBuffer(response.body)) {
    const filter = enforcer.filterSse(subject, options.privateCache);
    pipeline(response.body, filter, () => {});
    return { ...response, body: filter };
  }
  if (!isJson(response.headers)) return response;
  const whole = Buffer.isBuffer(response.body) ? response.body : await readBounded(response.body, LIST_ANSWER_MAX_BYTES, options.timeoutMs);
  const body = enforcer.filterJson(whole, subject, options.privateCache);
  if (body === whole && whole === response.body) return response;
  const headers = { ...response.headers };
  delete headers['content-length'];
  return { ...response, headers, body };
}

function isJson(headers: IncomingHttpHeaders): boolean {
  const type = headers['content-type'];
  return typeof type === 'string' && /^application\/json\b/i.test(type);
}
