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
