/**
 * Every Store key the gateway writes, in one place (docs/storage-keys.md lists them with their
 * TTLs; test/docs/storage-keys.test.ts holds the two together). Token-derived keys use the
 * token's SHA-256, never the token.
 */
import { sha256 } from './secrets.ts';

export const keys = {
  client: (clientId: string) => `client:${clientId}`,
  failedClient: (clientId: string) => `client-failed:${clientId}`,
  authorizationRequest: (id: string) => `authreq:${id}`,
  upstreamState: (state: string) => `state:${state}`,
  code: (codeHash: string) => `code:${codeHash}`,
  usedCode: (codeHash: string) => `code-used:${codeHash}`,
  accessToken: (tokenHash: string) => `at:${tokenHash}`,
  refreshToken: (tokenHash: string) => `rt:${tokenHash}`,
  usedRefreshToken: (tokenHash: string) => `rt-used:${tokenHash}`,
  refreshRotation: (tokenHash: string) => `rt-rotation:${tokenHash}`,
  grant: (grantId: string) => `grant:${grantId}`,
  grantTokens: (grantId: string) => `grant-tokens:${grantId}`,
  userGrants: (userKey: string) => `user-grants:${userKey}`,
  consent: (userKey: string, clientId: string) => `consent:${userKey}:${clientId}`,
  userConsents: (userKey: string) => `user-consents:${userKey}`,
  accountSession: (sessionHash: string) => `account-session:${sessionHash}`,
  /** A JWT assertion's jti, once used (client assertions: issuer `client:<id>`; ID-JAGs: their issuer). */
  usedAssertion: (issuer: string, jti: string) => `assertion-used:${sha256(`${issuer}\n${jti}`)}`,
  /** A backend's downstream token for a user (sealed), by the user and the scopes it carries. */
  downstreamToken: (userKey: string, scopes: readonly string[]) => `downstream:${sha256(`${userKey}\n${[...scopes].sort().join(' ')}`)}`,
  /** What a grant's client declared at its last MCP `initialize` (URL-mode elicitation), for downstream consent links. */
  clientCapabilities: (grantId: string) => `client-caps:${grantId}`,
  rateLimit: (name: string, ip: string, window: number) => `ratelimit:${name}:${ip}:${window}`,
  /** A quota's call counter for one window: `scope` a backend or `*` (global), `who` whose calls it counts (src/policy/quota.ts). */
  quota: (scope: string, name: string, who: string, window: number) => `quota:${scope}:${name}:${sha256(who)}:${window}`,
  /** MCP session id → the user the backend issued it to (MCP security best practices, Session Hijacking). */
  mcpSession: (resource: string, sessionId: string) => `mcp-session:${resource}:${sha256(sessionId)}`,
  legacySession: (sessionId: string) => `legacy-session:${sessionId}`,
  /** The dev IdP's (oidc-provider's) entries; ids are its bearer secrets, so only their SHA-256 appears. */
  devIdpEntry: (model: string, id: string) => `devidp:${model}:${sha256(id)}`,
  devIdpByUid: (model: string, uid: string) => `devidp:${model}-uid:${sha256(uid)}`,
  devIdpByUserCode: (model: string, userCode: string) => `devidp:${model}-usercode:${sha256(userCode)}`,
  devIdpGrant: (grantId: string) => `devidp:grant:${sha256(grantId)}`,
  /** A user's group ids read from Microsoft Graph after a groups overage (src/oauth/graph-groups.ts). */
  graphGroups: (userKey: string) => `graph-groups:${userKey}`,
};
