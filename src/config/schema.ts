import { createPrivateKey, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { celProblem } from '../policy/cel.ts';
import { conditionOf } from '../policy/policy.ts';

/** Bare private-use redirect schemes of MCP clients in use (Cursor, VS Code, Windsurf). */
const CUSTOM_SCHEMES = ['cursor', 'vscode', 'vscode-insiders', 'windsurf'];
const UNUSED_CLIENT_TTL_SECONDS = 30 * 86400;

/**
 * A secret value. In YAML write `{ env: NAME }` or `{ file: PATH }` (any value may be written so);
 * config/load.ts resolves those to strings before validation. Never logged.
 */
const secretSchema = z.string().min(1);

/** What is wrong with a PEM private key (undefined: nothing); `allowed` names the key types accepted. */
function privateKeyProblem(pem: string, allowed: 'p256' | 'jws'): string | undefined {
  let type: string | undefined;
  let curve: string | undefined;
  try {
    const key = createPrivateKey(pem);
    type = key.asymmetricKeyType;
    curve = key.asymmetricKeyDetails?.namedCurve;
  } catch {
    return 'not a PEM private key';
  }
  if (type === 'ec' && curve === 'prime256v1') return undefined;
  if (allowed === 'p256') return 'must be a P-256 (prime256v1) EC key for ES256';
  return type === 'rsa' || type === 'ed25519' ? undefined : `unsupported key type ${type ?? 'unknown'} (use RSA, P-256 or Ed25519)`;
}

const devUserSchema = z
  .object({
    login: z.string().min(1),
    password: z.string().min(1),
    name: z.string().min(1),
    email: z.string().email().optional(),
    oid: z.string().uuid().optional(),
    roles: z.array(z.string()).default([]),
    groups: z.array(z.string()).default([]),
  })
  .strict();

const devIdpSchema = z
  .object({
    host: z.string().default('127.0.0.1'),
    /** 0 picks a free port. */
    port: z.number().int().min(0).max(65535).default(8081),
    /** Tenant id put in `tid` and in the Entra-shaped issuer. */
    tenantId: z.string().uuid().default('00000000-0000-4000-8000-000000000001'),
    users: z.array(devUserSchema).min(1),
    /** The dev IdP refuses to start under NODE_ENV=production unless this is true. */
    allowInProduction: z.boolean().default(false),
  })
  .strict();

const privateKeyJwtSchema = z
  .object({
    /** PEM (PKCS#8) private key: RSA, P-256 or Ed25519. */
    privateKey: secretSchema,
    /** PEM certificate; its SHA-256 thumbprint goes in the assertion header as `x5t#S256` (Entra). */
    certificate: secretSchema.optional(),
    keyId: z.string().optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    const problem = privateKeyProblem(v.privateKey, 'jws');
    if (problem) return ctx.addIssue({ code: 'custom', path: ['privateKey'], message: problem });
    if (v.certificate === undefined) return;
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(v.certificate);
    } catch {
      return ctx.addIssue({ code: 'custom', path: ['certificate'], message: 'not a PEM certificate' });
    }
    if (!certificate.checkPrivateKey(createPrivateKey(v.privateKey))) {
      ctx.addIssue({ code: 'custom', path: ['certificate'], message: 'does not match the private key' });
    }
  });

const oidcIdpSchema = z
  .object({
    /** Issuer URL; metadata is discovered at /.well-known/openid-configuration. */
    issuer: z.string().url(),
    clientId: z.string().min(1),
    clientSecret: secretSchema.optional(),
    privateKeyJwt: privateKeyJwtSchema.optional(),
    scopes: z.array(z.string()).default(['openid', 'profile', 'email', 'offline_access']),
    /** Claim names mapped into the user identity. */
    rolesClaim: z.string().default('roles'),
    groupsClaim: z.string().default('groups'),
  })
  .strict()
  .refine((v) => (v.clientSecret ? 1 : 0) + (v.privateKeyJwt ? 1 : 0) === 1, {
    message: 'exactly one of clientSecret or privateKeyJwt is required',
  });

const entraIdpSchema = z
  .object({
    /** A tenant id, or `organizations` / `common` (then allowedTenants is required). */
    tenantId: z.string().min(1),
    allowedTenants: z.array(z.string().uuid()).default([]),
    clientId: z.string().min(1),
    authorityHost: z.string().url().default('https://login.microsoftonline.com'),
    clientSecret: secretSchema.optional(),
    certificate: privateKeyJwtSchema.optional(),
    /**
     * Federated credential from a managed identity (secretless, like the reference deployment).
     * Entra trusts only user-assigned identities as federated credentials.
     */
    managedIdentity: z
      .object({
        /** Client id of the user-assigned managed identity. */
        clientId: z.string().min(1),
        /**
         * Audience of the identity's token; by default the one of the authority host's cloud
         * (api://AzureADTokenExchange, …USGov, …China), which the federated credential must name.
         */
        audience: z.string().min(1).optional(),
      })
      .strict()
      .optional(),
    /** Upstream scopes. OIDC scopes plus at most one resource's scopes; `.default` alone (DESIGN §6). */
    scopes: z.array(z.string()).default(['openid', 'profile', 'email', 'offline_access', 'User.Read']),
    /**
     * Microsoft Graph, where a groups overage is resolved (POST /v1.0/me/getMemberGroups, delegated
     * User.Read); default https://graph.microsoft.com, for a national cloud its Graph host
     * (https://graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn).
     */
    graphHost: z.string().url().optional(),
    /** How long a user's groups read from Graph are used (default 600; a group removed in Entra counts after at most this). */
    groupsCacheSeconds: z.number().int().min(60).max(3600).optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    const methods = (v.clientSecret ? 1 : 0) + (v.certificate ? 1 : 0) + (v.managedIdentity ? 1 : 0);
    if (methods !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['clientSecret'],
        message: 'exactly one of clientSecret, certificate or managedIdentity is required',
      });
    }
    if (v.certificate && !v.certificate.certificate) {
      // Entra names the credential by the certificate's thumbprint (x5t#S256).
      ctx.addIssue({ code: 'custom', path: ['certificate', 'certificate'], message: 'required' });
    }
    if (['organizations', 'common'].includes(v.tenantId) && v.allowedTenants.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['allowedTenants'],
        message: `required when tenantId is ${v.tenantId}`,
      });
    }
  });

/** Exactly one upstream: `upstream: { entra: {…} }`, `{ oidc: {…} }` or `{ dev: {…} }`. */
const upstreamSchema = z
  .object({ dev: devIdpSchema.optional(), oidc: oidcIdpSchema.optional(), entra: entraIdpSchema.optional() })
  .strict()
  .refine((u) => [u.dev, u.oidc, u.entra].filter(Boolean).length === 1, {
    message: 'exactly one of dev, oidc or entra is required',
  });

/** PEM certificates: at least one `-----BEGIN CERTIFICATE-----` block, every block an X.509 certificate. */
function pemCertificatesProblem(pem: string): string | undefined {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g);
  if (!blocks) return 'not a PEM certificate (no -----BEGIN CERTIFICATE----- block)';
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch {
      return `certificate ${i + 1} of the PEM bundle does not parse`;
    }
  }
  return undefined;
}

/**
 * Extra trust for a TLS server the gateway connects to (the Redis Store, a backend): a private CA
 * trusted in addition to the system's, and the name checked against the server's certificate.
 */
const tlsTrustSchema = z
  .object({
    /** PEM CA bundle trusted for the server (in addition to the system's); usually `{ file: … }`. */
    ca: secretSchema
      .superRefine((pem, ctx) => {
        const problem = pemCertificatesProblem(pem);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
    /** Name checked against the server certificate when it differs from the URL host. */
    servername: z.string().min(1).optional(),
  })
  .strict();

export type TlsTrustConfig = z.infer<typeof tlsTrustSchema>;

const storeSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('sqlite'), path: z.string().min(1).default('./data/gateway.db') }).strict(),
  z
    .object({
      kind: z.literal('redis'),
      /** redis:// or rediss:// (Azure Cache for Redis: rediss://…:6380). */
      url: secretSchema,
      keyPrefix: z.string().default('mcpgw:'),
      /** rediss:// turns TLS on with the system CAs; this adds a private CA or a server name. */
      tls: tlsTrustSchema.optional(),
      /**
       * Authenticate with a Microsoft Entra token instead of a password (Azure Managed Redis's
       * default; then the url carries no password): `{}` for DefaultAzureCredential, or the client
       * id of a user-assigned managed identity. Re-sent with AUTH on every connection before expiry.
       */
      entraAuth: z
        .object({
          /** Client id of a user-assigned managed identity; omit for DefaultAzureCredential. */
          managedIdentityClientId: z.string().min(1).optional(),
          /** Redis user name: the identity's object (principal) id; by default the token's `oid` claim. */
          username: z.string().min(1).optional(),
        })
        .strict()
        .optional(),
    })
    .strict(),
]);

/**
 * One policy rule (docs/configuration.md, Policy): which MCP operations it is about, and when it
 * applies. Operations: `tools` (tools/call by name), `prompts` (prompts/get by name), `resources`
 * (resources/read by URI), `methods` (any method by name); `*` matches anything; none = every
 * operation. Conditions, all of which must hold: `roles` (any of), `groups` (any of, Entra object
 * ids), `scopes` (all of), `when` (a CEL expression). A `step-up` rule requires its `scopes` of a call
 * its other conditions apply to: a token without them is answered 403 insufficient_scope (MCP
 * 2025-11-25 authorization §Scope Challenge Handling) instead of the call being denied.
 */
const policyRuleSchema = z
  .object({
    name: z.string().min(1),
    effect: z.enum(['allow', 'deny', 'step-up']).default('allow'),
    tools: z.array(z.string().min(1)).min(1).optional(),
    prompts: z.array(z.string().min(1)).min(1).optional(),
    resources: z.array(z.string().min(1)).min(1).optional(),
    methods: z.array(z.string().min(1)).min(1).optional(),
    roles: z.array(z.string().min(1)).min(1).optional(),
    groups: z.array(z.string().min(1)).min(1).optional(),
    scopes: z.array(z.string().min(1)).min(1).optional(),
    /** CEL over user, client, scopes, backend, method, name, arguments, request (docs/configuration.md). */
    when: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((rule, ctx) => {
    // Checked here so a bad rule stops the start with one line naming it and its key.
    if (rule.when !== undefined) {
      const problem = celProblem(rule.when);
      if (problem) ctx.addIssue({ code: 'custom', path: ['when'], message: `rule "${rule.name}": ${problem}` });
    }
    if (rule.effect === 'step-up' && rule.scopes === undefined) {
      ctx.addIssue({ code: 'custom', path: ['scopes'], message: `rule "${rule.name}": a step-up rule names the scopes it requires` });
    }
    const combined = conditionOf(rule);
    if (rule.when === undefined && combined !== undefined) {
      const problem = celProblem(combined);
      if (problem) ctx.addIssue({ code: 'custom', path: [], message: `rule "${rule.name}": ${problem}` });
    }
  });

/**
 * One quota (docs/configuration.md, Quotas): at most `limit` of the operations it names in
 * `windowSeconds`, counted per user, per client, or per user and tool, in the Store (shared by
 * every replica). Operations as in a rule; `when` (CEL) narrows whom it counts.
 */
const policyQuotaSchema = z
  .object({
    name: z.string().min(1),
    tools: z.array(z.string().min(1)).min(1).optional(),
    prompts: z.array(z.string().min(1)).min(1).optional(),
    resources: z.array(z.string().min(1)).min(1).optional(),
    methods: z.array(z.string().min(1)).min(1).optional(),
    when: z.string().min(1).optional(),
    limit: z.number().int().positive(),
    /** Whose calls share one count: `user+tool` counts each tool (prompt, resource URI, method) apart. */
    per: z.enum(['user', 'client', 'user+tool']),
    windowSeconds: z.number().int().min(1).max(86_400).default(60),
    /** `sliding`: the previous window's count weighs by how much of it still overlaps (no double burst at a boundary). */
    window: z.enum(['sliding', 'fixed']).default('sliding'),
  })
  .strict()
  .superRefine((quota, ctx) => {
    const problem = quota.when === undefined ? undefined : celProblem(quota.when);
    if (problem) ctx.addIssue({ code: 'custom', path: ['when'], message: `quota "${quota.name}": ${problem}` });
  });

/**
 * Ordered allow/deny/step-up rules; deny wins; once a backend has rules (its own or global), what
 * none allows is denied; an allowed call a step-up rule applies to needs that rule's scopes.
 * Quotas then count the calls the rules allow.
 */
export const policySchema = z
  .object({ rules: z.array(policyRuleSchema).default([]), quotas: z.array(policyQuotaSchema).optional() })
  .strict()
  .superRefine((policy, ctx) => {
    // A quota's count is stored under its name: two of one name would share it.
    const names = new Set<string>();
    policy.quotas?.forEach((quota, i) => {
      if (names.has(quota.name)) ctx.addIssue({ code: 'custom', path: ['quotas', i, 'name'], message: `quota "${quota.name}": duplicate name` });
      names.add(quota.name);
    });
  });

/** Entra reads a scope without a resource prefix as a Microsoft Graph scope. */
export function entraResourceOf(scope: string): string {
  const slash = scope.lastIndexOf('/');
  return slash > 0 ? scope.slice(0, slash).toLowerCase() : 'https://graph.microsoft.com';
}

/**
 * A token a backend gets for another resource, minted from the user's upstream (Entra) grant:
 * never the client's token, never the sign-in's (no passthrough).
 */
const downstreamTokenSchema = z
  .object({
    /**
     * Entra scopes of one resource: e.g. `https://graph.microsoft.com/User.Read`, or
     * `api://<backend app>/.default` for a backend that validates Entra tokens itself.
     */
    scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/)).min(1),
    /** `refresh`: the user's Entra refresh token redeemed for these scopes; `on-behalf-of`: Entra's OBO flow. */
    via: z.enum(['refresh', 'on-behalf-of']).default('refresh'),
    /** Push: sent to the backend in this header as `Bearer <token>`. Without it, the backend pulls it at /token (RFC 8693). */
    header: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'an HTTP header name').optional(),
    /** Push only with `tools/call` of these tools (default: with every request). */
    tools: z.array(z.string().min(1)).min(1).optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    const resources = new Set(t.scopes.map(entraResourceOf));
    if (resources.size > 1) ctx.addIssue({ code: 'custom', path: ['scopes'], message: 'scopes of one resource only (Entra issues a token for one resource)' });
    if (t.scopes.some((s) => s.endsWith('/.default')) && t.scopes.length > 1) {
      ctx.addIssue({ code: 'custom', path: ['scopes'], message: '.default cannot be combined with other scopes' });
    }
    if (t.tools && !t.header) ctx.addIssue({ code: 'custom', path: ['tools'], message: 'tools needs header (it selects what is pushed)' });
  });

const backendSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes'),
    /** Public path of the Streamable HTTP endpoint, e.g. /mcp or /github/mcp. */
    path: z.string().regex(/^\/([a-z0-9-]+\/)*mcp$/, 'must end in /mcp, e.g. /mcp or /github/mcp'),
    /** Upstream Streamable HTTP URL. */
    url: z.string().url().optional(),
    /** Upstream legacy SSE URL (served publicly at <path>/sse + <path>/message). */
    sseUrl: z.string().url().optional(),
    /**
     * Scopes a token for this resource may carry; the first is required for every call. What a
     * client gets without asking: all but those only step-up rules require (asked for when needed).
     */
    scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/)).min(1).default(['mcp:tools']),
    credential: z
      .object({ header: z.string().min(1).default('x-functions-key'), value: secretSchema })
      .strict()
      .optional(),
    identityAssertion: z
      .object({
        header: z.string().min(1).default('x-mcp-identity'),
        ttlSeconds: z.number().int().min(30).max(3600).default(300),
      })
      .strict()
      .prefault({}),
    /** An https backend's certificate from a private CA: `{ ca: { file: … }, servername }`. */
    tls: tlsTrustSchema.optional(),
    connectTimeoutMs: z.number().int().positive().default(5000),
    headersTimeoutMs: z.number().int().positive().default(60000),
    maxBodyBytes: z.number().int().positive().default(4 * 1024 * 1024),
    /** Who may call which tool, prompt, resource or method on this backend (after the global rules). */
    policy: policySchema.optional(),
    /** Tokens for other resources this backend gets on the user's behalf (upstream.entra only). */
    downstreamTokens: z.array(downstreamTokenSchema).min(1).optional(),
    /**
     * Pull: these configured clients (`clients[]`, registered for token-exchange) are this backend;
     * each may exchange the identity assertions it received for its downstream tokens at /token (RFC 8693).
     */
    tokenExchange: z.object({ clientIds: z.array(z.string().min(1)).min(1) }).strict().optional(),
  })
  .strict()
  .refine((b) => b.url || b.sseUrl, { message: 'at least one of url or sseUrl is required' })
  .superRefine((b, ctx) => {
    const plain = (['url', 'sseUrl'] as const).find((key) => /^http:/i.test(b[key] ?? ''));
    if (b.tls && plain) ctx.addIssue({ code: 'custom', path: ['tls'], message: `needs an https:// backend (${plain} is http://)` });
  });

/** RFC 7523 / RFC 7591 grant type of a JWT bearer assertion (ID-JAG, Entra app-only token). */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** RFC 8693 §2.1: the token exchange grant type. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** JWS algorithms accepted for client assertions and ID-JAGs (never `none`, never HMAC). */
export const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;

/**
 * A confidential client registered by the operator (OAuth 2.1 §2; MCP OAuth Client Credentials
 * extension): it authenticates with a secret (client_secret_basic/_post) or with a key
 * (private_key_jwt, RFC 7523 §2.2), never by client_id alone.
 */
const configuredClientSchema = z
  .object({
    clientId: z.string().min(1).max(200).regex(/^[^\s:]+$/, 'no spaces or colons (Basic credentials)'),
    name: z.string().min(1).optional(),
    /** client_secret_basic / client_secret_post. */
    secret: secretSchema.optional(),
    /** private_key_jwt: the client's public keys, inline (RFC 7517 JWK Set)… */
    jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).optional(),
    /** …or at a URL (fetched, cached and refreshed on an unknown `kid`). */
    jwksUri: z.string().url().optional(),
    /**
     * …or an Entra app (managed identity, service principal): its app-only token for the gateway's
     * app (`aud` one of workloads.entra.audiences) is the client_assertion (RFC 7523 §2.2), with
     * `tid` = tenantId and `azp`/`appid` = appId (a managed identity's client id).
     */
    entraApp: z.object({ tenantId: z.string().uuid(), appId: z.string().min(1) }).strict().optional(),
    grantTypes: z.array(z.enum(['client_credentials', JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT, 'authorization_code', 'refresh_token'])).min(1),
    /** Required for authorization_code. */
    redirectUris: z.array(z.string()).default([]),
    /** The most this client may get (of the resource's scopes); default: all of them. */
    scopes: z.array(z.string()).optional(),
    /** Roles of the client itself when it calls with client_credentials (a workload principal). */
    roles: z.array(z.string()).default([]),
  })
  .strict()
  .superRefine((c, ctx) => {
    if ([c.secret, c.jwks, c.jwksUri, c.entraApp].filter(Boolean).length !== 1) {
      ctx.addIssue({ code: 'custom', path: ['secret'], message: 'exactly one of secret, jwks, jwksUri or entraApp is required' });
    }
    if (c.grantTypes.includes('authorization_code') && c.redirectUris.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['redirectUris'], message: 'required for authorization_code' });
    }
  });

/** An enterprise IdP whose ID-JAGs are redeemed at /token (draft-ietf-oauth-identity-assertion-authz-grant). */
const idJagIssuerSchema = z
  .object({
    /** Exactly the `iss` of its ID-JAGs. */
    issuer: z.string().url(),
    /** Its JWK Set; by default the `jwks_uri` of its RFC 8414 / OpenID metadata. */
    jwksUri: z.string().url().optional(),
    algorithms: z.array(z.enum(ASYMMETRIC_ALGORITHMS)).min(1).default(['RS256', 'ES256']),
    /**
     * Whose user an ID-JAG names: `issuer` (default: this IdP's) + the `subjectClaim`. Set `issuer`
     * to the upstream sign-in IdP's issuer when both name users alike (then /account shows the
     * same person's grants from either path).
     */
    user: z
      .object({
        issuer: z.string().min(1).optional(),
        subjectClaim: z.string().default('sub'),
        emailClaim: z.string().default('email'),
        nameClaim: z.string().default('name'),
        /** Claims whose values become the user's roles and groups (for the policy and the identity assertion). */
        rolesClaim: z.string().default('roles'),
        groupsClaim: z.string().default('groups'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** Enterprise-Managed Authorization (MCP extension io.modelcontextprotocol/enterprise-managed-authorization). */
const enterpriseAuthorizationSchema = z
  .object({
    issuers: z.array(idJagIssuerSchema).min(1),
    /** An ID-JAG living longer than this (exp − iat) is refused. */
    maxLifetimeSeconds: z.number().int().min(10).max(300).default(300),
  })
  .strict();

/**
 * Entra app-only tokens (managed identity, service principal) redeemed at /token as a jwt-bearer
 * assertion: a workload principal with the token's app roles.
 */
const entraWorkloadsSchema = z
  .object({
    /** Tenants whose apps may call (`tid`). */
    tenants: z.array(z.string().uuid()).min(1),
    /** Accepted `aud`: the gateway's app (its client id and/or api://… Application ID URI). */
    audiences: z.array(z.string().min(1)).min(1),
    authorityHost: z.string().url().default('https://login.microsoftonline.com'),
    /** Default: {authorityHost}/common/discovery/v2.0/keys. */
    jwksUri: z.string().url().optional(),
    /** App ids (`azp`/`appid`) allowed whatever their roles… */
    allowedAppIds: z.array(z.string().min(1)).default([]),
    /** …or apps holding at least one of these app roles. */
    requiredRoles: z.array(z.string().min(1)).default([]),
  })
  .strict();

/**
 * The audit trail (docs/security.md, Audit trail): one record per MCP operation and per security
 * event, hash-chained with signed checkpoints.
 */
const auditSchema = z
  .object({
    /** `stdout` (JSON lines, the default), `file` (rotated by size), `otlp` (OpenTelemetry log records), `azure-monitor` (Application Insights) or `off`. */
    sink: z.enum(['off', 'stdout', 'file', 'otlp', 'azure-monitor']).default('stdout'),
    file: z
      .object({
        path: z.string().min(1).default('./data/audit.jsonl'),
        /** Rotate before the file would pass this size. */
        maxBytes: z.number().int().min(4096).default(10 * 1024 * 1024),
        /** Rotated files kept (path.1 … path.N). */
        maxFiles: z.number().int().min(0).max(1000).default(5),
      })
      .strict()
      .prefault({}),
    azureMonitor: z
      .object({
        /** The Application Insights connection string; default: the APPLICATIONINSIGHTS_CONNECTION_STRING variable. */
        connectionString: z.string().min(1).optional(),
      })
      .strict()
      .prefault({}),
    /** Tool arguments in records: `off`, `hash` (SHA-256 of their canonical JSON), `redacted`, `full`. Secret-named keys never appear. */
    arguments: z.enum(['off', 'hash', 'redacted', 'full']).default('hash'),
    /** Dotted paths (`*` = any key) whose values `redacted` mode replaces, e.g. `snippet` or `items.*.body`. */
    redact: z.array(z.string().min(1)).default([]),
    /** A checkpoint signs the chain head this often (when anything was written since the last). */
    checkpointSeconds: z.number().int().min(1).max(86400).default(60),
    /** Records waiting for a slow sink beyond this many are dropped (counted in /metrics and in the trail). */
    queueMax: z.number().int().min(1).default(10_000),
  })
  .strict()
  .prefault({});

/** Defaults of `timeouts` (also what createHttpApp uses when given none). */
export const DEFAULT_TIMEOUTS = { headersMs: 10_000, oauthBodyMs: 5_000, mcpBodyMs: 60_000, keepAliveMs: 5_000 } as const;

/**
 * How long a client may take to send a request, and keep an idle connection (docs/security.md,
 * Request timeouts). A request too slow gets 408 (RFC 9110 §15.5.9) and its connection is closed.
 */
const timeoutsSchema = z
  .object({
    /** Request line and headers, on every route (slow-loris). */
    headersMs: z.number().int().positive().default(DEFAULT_TIMEOUTS.headersMs),
    /** The body of a request to an OAuth endpoint or page (register, token, revoke, consent …), from its head. */
    oauthBodyMs: z.number().int().positive().default(DEFAULT_TIMEOUTS.oauthBodyMs),
    /** The body of an MCP POST, from when the gateway starts reading it; an expired upload's backend request is aborted. */
    mcpBodyMs: z.number().int().positive().default(DEFAULT_TIMEOUTS.mcpBodyMs),
    /** A keep-alive connection with no request in flight is closed after this. */
    keepAliveMs: z.number().int().positive().default(DEFAULT_TIMEOUTS.keepAliveMs),
  })
  .strict()
  .default(DEFAULT_TIMEOUTS);

export const configSchema = z
  .object({
    /** `dev` relaxes CIMD fetch rules (http, loopback) and enables the dev IdP; `production` is strict. */
    mode: z.enum(['dev', 'production']).default('production'),
    /** The gateway's public base URL (the OAuth issuer). https, or http on loopback. */
    publicUrl: z
      .string()
      .url()
      .refine((u) => !URL.canParse(u) || new URL(u).protocol === 'https:' || isLoopbackHost(new URL(u).hostname), 'must be https (http only on loopback)')
      .refine((u) => {
        const url = URL.canParse(u) ? new URL(u) : undefined;
        return !url || (url.pathname === '/' && !url.search && !url.hash);
      }, 'must be an origin without path, query or fragment'),
    listen: z
      .object({ host: z.string().default('127.0.0.1'), port: z.number().int().min(0).max(65535).default(8080) })
      .strict()
      .prefault({}),
    /**
     * The admin listener: /metrics and /readyz (and /healthz) are served here only, never on
     * `listen`. Keep it off the public network; in a container bind 0.0.0.0 for the probes and do
     * not publish the port. Port 0 picks a free port.
     */
    admin: z
      .object({
        listen: z
          .object({ host: z.string().default('127.0.0.1'), port: z.number().int().min(0).max(65535).default(9464) })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /**
     * Behind a load balancer: trust X-Forwarded-For for the client IP (rate limits, logs).
     * true (any), or a list of proxy addresses/CIDRs.
     */
    trustProxy: z.union([z.boolean(), z.array(z.string().min(1))]).default(false),
    /** Origins allowed to call the MCP endpoints from a browser (Origin header). */
    allowedOrigins: z.array(z.string()).default([]),
    store: storeSchema.default({ kind: 'sqlite', path: './data/gateway.db' }),
    secrets: z
      .object({
        /** AES-256-GCM keys for upstream tokens at rest: id → 32 bytes base64; the first one seals. */
        encryptionKeys: z
          .array(
            z
              .object({
                id: z.string().min(1),
                key: secretSchema.refine((k) => Buffer.from(k, 'base64').length === 32, 'must be 32 bytes, base64-encoded'),
              })
              .strict(),
          )
          .min(1),
        /** HMAC key for consent cookies and CSRF tokens (≥ 32 bytes). */
        cookieKey: secretSchema.refine((k) => Buffer.byteLength(k, 'utf8') >= 32, 'must be at least 32 bytes'),
        /** PKCS#8 PEM of the P-256 key that signs identity assertions and audit checkpoints (ES256). */
        signingKey: secretSchema.superRefine((pem, ctx) => {
          const problem = privateKeyProblem(pem, 'p256');
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        }),
      })
      .strict(),
    upstream: upstreamSchema,
    tokens: z
      .object({
        accessTokenTtlSeconds: z.number().int().min(60).max(86400).default(3600),
        refreshTokenTtlSeconds: z.number().int().min(3600).default(30 * 86400),
        authorizationCodeTtlSeconds: z.number().int().min(10).max(600).default(300),
        /** How long a replica trusts a token lookup (≤ 1 s: the cross-replica revocation bound); 0 = read the Store on every call. */
        cacheMs: z.number().int().min(0).max(1000).default(1000),
        /**
         * After a refresh, the old refresh token still returns the same new pair for this many
         * seconds (a client that retried keeps its grant); later it counts as reuse. 0 = never.
         */
        refreshReuseIntervalSeconds: z.number().int().min(0).max(60).default(2),
      })
      .strict()
      .prefault({}),
    clientRegistration: z
      .object({
        dynamic: z.boolean().default(true),
        /** A dynamically registered client with no use (/authorize, /token) and no grant this long is forgotten. */
        unusedClientTtlSeconds: z.number().int().min(3600).default(UNUSED_CLIENT_TTL_SECONDS),
        /**
         * Private-use redirect schemes accepted without a dot (RFC 8252 §7.1 wants reverse-domain
         * names; these editors use bare ones). Schemes that run or load content are refused anyway.
         */
        customSchemes: z.array(z.string().regex(/^[a-z][a-z0-9+.-]*$/, 'a lowercase URI scheme without ":"')).default(CUSTOM_SCHEMES),
        /** Client ID Metadata Documents: fetch limits and SSRF guards. */
        metadataDocuments: z
          .object({
            enabled: z.boolean().default(true),
            timeoutMs: z.number().int().positive().default(5000),
            maxBytes: z.number().int().positive().default(64 * 1024),
            /** Allow http:// and private/loopback/link-local addresses (defaults to true in dev mode). */
            allowInsecure: z.boolean().optional(),
            /** Extra PEM CA bundle trusted for document hosts on a private PKI (in addition to the system's). */
            extraCa: secretSchema.optional(),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /** Per client IP (unless said otherwise), fixed windows, counted in the Store (so shared by every replica). 0 disables. */
    rateLimits: z
      .object({
        registrationsPerHour: z.number().int().min(0).default(30),
        /** For the whole gateway, not per IP: rotating source addresses cannot get around it. */
        registrationsPerDay: z.number().int().min(0).default(1000),
        tokenRequestsPerMinute: z.number().int().min(0).default(300),
        /** GET /authorize and /account: each writes short-lived state and may fetch a CIMD document. */
        authorizationsPerMinute: z.number().int().min(0).default(120),
      })
      .strict()
      .prefault({}),
    backends: z.array(backendSchema).min(1),
    /** Pre-registered confidential clients (client_credentials, ID-JAG, or the code flow with a secret/key). */
    clients: z.array(configuredClientSchema).default([]),
    /** ID-JAG at /token; off unless issuers are listed. */
    enterpriseAuthorization: enterpriseAuthorizationSchema.optional(),
    /** Callers with no person: Entra app-only tokens. */
    workloads: z.object({ entra: entraWorkloadsSchema.optional() }).strict().default({}),
    /** Rules for every backend, judged with (before) each backend's own. */
    policy: policySchema.optional(),
    timeouts: timeoutsSchema,
    audit: auditSchema,
    /** On SIGTERM: stop accepting, end streams, let in-flight requests finish within this bound. */
    shutdownGraceSeconds: z.number().min(0).max(300).default(10),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict()
  .superRefine((c, ctx) => {
    const paths = new Set<string>();
    c.backends.forEach((b, i) => {
      if (paths.has(b.path)) ctx.addIssue({ code: 'custom', path: ['backends', i, 'path'], message: 'duplicate path' });
      paths.add(b.path);
    });
    c.backends.forEach((b, i) => {
      // A step-up asks the user for scopes at /authorize: they must be scopes of the backend, and
      // the first scope (required for every call, src/proxy/bearer.ts) is never one of them.
      const rules: [PolicyRuleConfig, (string | number)[]][] = [
        ...(c.policy?.rules ?? []).map((r, j): [PolicyRuleConfig, (string | number)[]] => [r, ['policy', 'rules', j, 'scopes']]),
        ...(b.policy?.rules ?? []).map((r, j): [PolicyRuleConfig, (string | number)[]] => [r, ['backends', i, 'policy', 'rules', j, 'scopes']]),
      ];
      for (const [rule, path] of rules) {
        if (rule.effect !== 'step-up') continue;
        for (const scope of rule.scopes ?? []) {
          if (!b.scopes.includes(scope)) {
            ctx.addIssue({ code: 'custom', path, message: `rule "${rule.name}": scope ${scope} is not one of backend ${b.name}'s scopes (backends[].scopes)` });
          } else if (scope === b.scopes[0]) {
            ctx.addIssue({ code: 'custom', path, message: `rule "${rule.name}": scope ${scope} is backend ${b.name}'s first scope, which every call needs; a step-up scope comes after it` });
          }
        }
      }
      if (b.downstreamTokens && !c.upstream.entra) {
        ctx.addIssue({ code: 'custom', path: ['backends', i, 'downstreamTokens'], message: 'needs upstream.entra (tokens are minted from the user\'s Entra grant)' });
      }
      if (b.tokenExchange && !b.downstreamTokens) {
        ctx.addIssue({ code: 'custom', path: ['backends', i, 'tokenExchange'], message: 'needs downstreamTokens (what the backend may exchange for)' });
      }
      b.tokenExchange?.clientIds.forEach((id, j) => {
        const client = c.clients.find((k) => k.clientId === id);
        if (!client?.grantTypes.includes(TOKEN_EXCHANGE_GRANT)) {
          ctx.addIssue({
            code: 'custom',
            path: ['backends', i, 'tokenExchange', 'clientIds', j],
            message: `${id} must be a client in clients[] with grantTypes including ${TOKEN_EXCHANGE_GRANT}`,
          });
        }
      });
      const ownScopes = c.upstream.entra?.scopes.filter((s) => !['openid', 'profile', 'email', 'offline_access'].includes(s)) ?? [];
      b.downstreamTokens?.forEach((t, j) => {
        if (t.via === 'on-behalf-of' && c.upstream.entra && ownScopes.length === 0) {
          ctx.addIssue({
            code: 'custom',
            path: ['backends', i, 'downstreamTokens', j, 'via'],
            message: 'on-behalf-of needs upstream.entra.scopes to name the gateway\'s own API scope (the user\'s token for it is the assertion)',
          });
        }
      });
    });
    const clientIds = new Set<string>();
    const entraApps = new Set<string>();
    c.clients.forEach((client, i) => {
      if (clientIds.has(client.clientId)) ctx.addIssue({ code: 'custom', path: ['clients', i, 'clientId'], message: 'duplicate clientId' });
      clientIds.add(client.clientId);
      if (!client.entraApp) return;
      const app = `${client.entraApp.tenantId}|${client.entraApp.appId}`;
      if (entraApps.has(app)) ctx.addIssue({ code: 'custom', path: ['clients', i, 'entraApp'], message: 'another client is this Entra app already' });
      entraApps.add(app);
      if (!c.workloads.entra?.tenants.includes(client.entraApp.tenantId)) {
        ctx.addIssue({
          code: 'custom',
          path: ['clients', i, 'entraApp', 'tenantId'],
          message: 'needs workloads.entra with this tenant in tenants (its audiences and keys judge the app\'s token)',
        });
      }
    });
    const workloads = c.workloads.entra;
    if (workloads && workloads.allowedAppIds.length + workloads.requiredRoles.length === 0 && entraApps.size === 0) {
      ctx.addIssue({ code: 'custom', path: ['workloads', 'entra'], message: 'allowedAppIds or requiredRoles must name who may call' });
    }
  });

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

export type RawConfig = z.infer<typeof configSchema>;
export type TimeoutsConfig = z.infer<typeof timeoutsSchema>;
export type BackendConfig = z.infer<typeof backendSchema>;
export type PolicyRuleConfig = z.infer<typeof policyRuleSchema>;
export type PolicyQuotaConfig = z.infer<typeof policyQuotaSchema>;
export type UpstreamConfig = z.infer<typeof upstreamSchema>;
export type DevIdpConfig = z.infer<typeof devIdpSchema>;
export type DevUser = z.infer<typeof devUserSchema>;
export type OidcIdpConfig = z.infer<typeof oidcIdpSchema>;
export type EntraIdpConfig = z.infer<typeof entraIdpSchema>;
export type ConfiguredClientConfig = z.infer<typeof configuredClientSchema>;
export type IdJagIssuerConfig = z.infer<typeof idJagIssuerSchema>;
export type EnterpriseAuthorizationConfig = z.infer<typeof enterpriseAuthorizationSchema>;
export type EntraWorkloadsConfig = z.infer<typeof entraWorkloadsSchema>;
