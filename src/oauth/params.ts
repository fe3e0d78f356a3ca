import { OAuthError } from './errors.ts';

export type Params = Record<string, unknown>;

/** RFC 6749 §3.1: parameters must not repeat; empty values count as absent. */
export function param(params: Params | undefined, name: string): string | undefined {
  const value = params?.[name];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw new OAuthError('invalid_request', `parameter ${name} must appear once`);
  return value;
}

export function requiredParam(params: Params | undefined, name: string): string {
  const value = param(params, name);
  if (value === undefined) throw new OAuthError('invalid_request', `${name} is required`);
  return value;
}

export function splitScopes(scope: string | undefined): string[] | undefined {
  if (scope === undefined) return undefined;
  return [...new Set(scope.split(' ').filter(Boolean))];
}

/** RFC 6749 §3.2 / RFC 7009 §2.1: these endpoints take form-encoded bodies only. */
export function requireForm(contentType: string | undefined, endpoint: string): void {
  if (!contentType?.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    throw new OAuthError('invalid_request', `the ${endpoint} endpoint takes application/x-www-form-urlencoded bodies`);
  }
}
