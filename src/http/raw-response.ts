import { type IncomingMessage, ServerResponse } from 'node:http';

/** Called once per response when it is done: its route (pattern, not path), method, status and duration. */
export type ResponseObserver = (route: string, method: string, status: number, seconds: number) => void;

/**
 * The response class of the app's server (createHttpApp). A raw route's answer has one 'close'
 * listener, shared by every response (no closure or listener of its own per call: benchmark 1),
 * which reports it to the response observer (metrics) and runs the hooks handlers set with
 * `onResponseClose` (the proxy's abort of its backend exchange, the audit trail's records).
 */
export class RawResponse extends ServerResponse {
  watched = false;
  observer: ResponseObserver | undefined = undefined;
  route = '';
  startedAt = 0;
  closeHook: (() => void) | undefined = undefined;
  /** Hooks set after the first (an audited call's request and operation records), in order. */
  moreCloseHooks: (() => void)[] | undefined = undefined;
}

/** A raw route's response from here on: observed when it closes, and ready for one `onResponseClose` hook. */
export function watchRawResponse(res: RawResponse, route: string, observer: ResponseObserver | undefined): void {
  res.watched = true;
  res.observer = observer;
  res.route = route;
  if (observer !== undefined) res.startedAt = performance.now();
  res.on('close', rawResponseClosed);
}

function rawResponseClosed(this: RawResponse): void {
  const hook = this.closeHook;
  if (hook !== undefined) {
    this.closeHook = undefined;
    hook();
  }
  const more = this.moreCloseHooks;
  if (more !== undefined) {
    this.moreCloseHooks = undefined;
    for (const next of more) next();
  }
  const observer = this.observer;
  if (observer !== undefined) observer(this.route, (this.req as IncomingMessage).method!, this.statusCode, (performance.now() - this.startedAt) / 1000);
}

/**
 * Runs `hook` once when `res` closes (finished or not; it checks `writableFinished` itself): on a
 * watched raw response in its shared listener (hooks in the order they were set), else by a
 * listener of its own; on a response already closed, in a microtask.
 */
export function onResponseClose(res: ServerResponse, hook: () => void): void {
  // Closed already (the client left while the handler awaited): its 'close' will not come again.
  if (res.closed) queueMicrotask(hook);
  else if (!(res instanceof RawResponse) || !res.watched) res.once('close', hook);
  else if (res.closeHook === undefined) res.closeHook = hook;
  else if (res.moreCloseHooks === undefined) res.moreCloseHooks = [hook];
  else res.moreCloseHooks.push(hook);
}
