import { markdownTable, round, type Section } from './report.ts';

interface Goal {
  name: string;
  target: string;
  /** The measured figure, or undefined when its benchmark did not run. */
  value: number | undefined;
  unit: string;
  /** True when `value` meets the goal. */
  ok: (v: number) => boolean;
  /** How far off, in words, when missed. */
  by: (v: number) => string;
}

/** The benchmark goals (bench/README.md) against one run's figures. */
export function goalsTable(sections: Section[]): string {
  const fig = (id: number, name: string) => {
    const value = sections.find((s) => s.id === id)?.figures[name];
    return value === undefined || Number.isNaN(value) ? undefined : value;
  };
  const min = (...values: (number | undefined)[]) => {
    const known = values.filter((v): v is number => v !== undefined);
    return known.length > 0 ? Math.min(...known) : undefined;
  };
  const max = (...values: (number | undefined)[]) => {
    const known = values.filter((v): v is number => v !== undefined);
    return known.length > 0 ? Math.max(...known) : undefined;
  };
  const atLeast = (target: number, unit = '') => ({
    ok: (v: number) => v >= target,
    by: (v: number) => `missed by ${round(target - v, 2)}${unit} (${round((100 * (target - v)) / target, 0)}% short)`,
  });
  const atMost = (target: number, unit = '') => ({
    ok: (v: number) => v <= target,
    by: (v: number) => `missed by ${round(v - target, 2)}${unit} (${round(v / target, 1)}× the goal)`,
  });
  const goals: Goal[] = [
    { name: 'minimal backend: gateway / nginx req/s, 16 connections', target: '≥ 0.9', value: fig(1, 'gatewayVsNginx16'), unit: '×', ...atLeast(0.9) },
    { name: 'minimal backend: gateway / nginx req/s, 64 connections', target: '≥ 0.9', value: fig(1, 'gatewayVsNginx64'), unit: '×', ...atLeast(0.9) },
    { name: 'real backend (snippets, SSE): gateway / nginx req/s, 16 connections', target: '≥ 0.9', value: fig(1, 'realGatewayVsNginx16'), unit: '×', ...atLeast(0.9) },
    { name: 'real backend (snippets, SSE): gateway / nginx req/s, 64 connections', target: '≥ 0.9', value: fig(1, 'realGatewayVsNginx64'), unit: '×', ...atLeast(0.9) },
    { name: 'real backend: gateway CPU per call / nginx’s, 16 connections', target: '≤ 1.5', value: fig(1, 'realGatewayCpuVsNginx16'), unit: '×', ...atMost(1.5, '×') },
    { name: 'real backend: gateway CPU per call / nginx’s, 64 connections', target: '≤ 1.5', value: fig(1, 'realGatewayCpuVsNginx64'), unit: '×', ...atMost(1.5, '×') },
    { name: 'minimal backend: gateway CPU per call / node proxy’s, 16 connections', target: '≤ 1.2', value: fig(1, 'gatewayCpuVsNodeProxy16'), unit: '×', ...atMost(1.2, '×') },
    // The same CPU ratios measured in pairs (both loaded at once, median of rounds): the precise ones.
    ...([16, 64] as const).flatMap((connections) => [
      {
        name: `minimal backend, paired: gateway CPU per call / node proxy’s, ${connections} connections`,
        target: '≤ 1.2',
        value: fig(1, `gatewayCpuVsNodeProxyPaired${connections}`),
        unit: '×',
        ...atMost(1.2, '×'),
      },
      {
        name: `real backend, paired: gateway CPU per call / nginx’s, ${connections} connections`,
        target: '≤ 1.5',
        value: fig(1, `realGatewayCpuVsNginxPaired${connections}`),
        unit: '×',
        ...atMost(1.5, '×'),
      },
    ]),
    { name: 'real backend: CPU the dev sample policy adds per tools/call, 16 connections (issue 12)', target: '≤ 10 µs', value: fig(1, 'realPolicyAddedCpuUs16'), unit: ' µs', ...atMost(10, ' µs') },
    {
      name: 'real backend: CPU the dev sample policy adds per tools/call, net of the control pair (A/A), 16 connections (issue 12)',
      target: '≤ 10 µs',
      value: fig(1, 'realPolicyNetAddedCpuUs16'),
      unit: ' µs',
      ...atMost(10, ' µs'),
    },
    { name: 'in process: the dev sample policy’s own CPU per tools/call (issue 12)', target: '≤ 10 µs', value: fig(1, 'policyInProcessCallUs'), unit: ' µs', ...atMost(10, ' µs') },
    // Issue 14: tracing (100% and 10% sampled) and the audit trail on cost ≤ 15% CPU per call over both off.
    ...(
      [
        ['audit on', 'Audit'],
        ['tracing sampled 100%', 'Trace100'],
        ['tracing sampled 10%', 'Trace10'],
        ['audit and tracing 100%', 'AuditTrace100'],
      ] as const
    ).flatMap(([what, key]) => [
      {
        name: `real backend: gateway CPU per tools/call with ${what} / all off, 16 connections (issue 14)`,
        target: '≤ 1.15',
        value: fig(1, `real${key}CpuVsPlain16`),
        unit: '×',
        ...atMost(1.15, '×'),
      },
      {
        name: `real backend: the same, net of the control pair (A/A) (issue 14)`,
        target: '≤ 1.15',
        value: fig(1, `real${key}NetCpuVsPlain16`),
        unit: '×',
        ...atMost(1.15, '×'),
      },
    ]),
    { name: 'added p50 at 16 connections', target: '≤ 0.5 ms', value: fig(1, 'addedP50_16'), unit: ' ms', ...atMost(0.5, ' ms') },
    { name: 'added p99 at 16 connections', target: '≤ 2 ms', value: fig(1, 'addedP99_16'), unit: ' ms', ...atMost(2, ' ms') },
    {
      name: 'cached token validations / s / core (lower of SQLite, Redis)',
      target: '≥ 300,000',
      value: min(fig(2, 'sqliteCached'), fig(2, 'redisCached')),
      unit: '/s',
      ...atLeast(300_000),
    },
    { name: 'uncached SQLite validations / s / core', target: '≥ 50,000', value: fig(2, 'sqliteUncached'), unit: '/s', ...atLeast(50_000) },
    {
      name: 'revoked token refused within the cache bound (+ one 5 ms poll)',
      target: '≤ 1,005 ms',
      value: max(fig(2, 'sqliteRevokedAfterMs'), fig(2, 'redisRevokedAfterMs')),
      unit: ' ms',
      ...atMost(1005, ' ms'),
    },
    {
      name: 'concurrent SSE streams held (each transport)',
      target: '10,000',
      value: min(fig(3, 'streamableStreams'), fig(3, 'legacyStreams')),
      unit: '',
      ...atLeast(10_000),
    },
    {
      name: 'gateway RSS per SSE stream (worse transport, top level)',
      target: '≤ 48 KiB',
      value: max(fig(3, 'streamableKiBPerStream'), fig(3, 'legacyKiBPerStream')),
      unit: ' KiB',
      ...atMost(48, ' KiB'),
    },
    {
      name: 'notification reaches every stream (worse transport, top level)',
      target: '≤ 1,000 ms',
      value: max(fig(3, 'streamableFanoutMs'), fig(3, 'legacyFanoutMs')),
      unit: ' ms',
      ...atMost(1000, ' ms'),
    },
    {
      name: 'tools/call p50 flat from 1k to 1M grants (largest / smallest, worse store)',
      target: '≤ 1.10×',
      value: max(fig(4, 'sqliteSpread'), fig(4, 'redisSpread')),
      unit: '×',
      ...atMost(1.1, '×'),
    },
  ];
  const rows = goals.map((g) => {
    if (g.value === undefined) return [g.name, g.target, 'not measured', '—'];
    const shown = Math.abs(g.value) >= 1000 ? Math.round(g.value).toLocaleString('en-US') : String(round(g.value, 3));
    return [g.name, g.target, `${shown}${g.unit}`, g.ok(g.value) ? 'met' : g.by(g.value)];
  });
  return markdownTable(['goal', 'target', 'measured', 'status'], rows);
}
