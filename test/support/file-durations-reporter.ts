/**
 * A `node --test` reporter (run-suite.ts adds it): one JSON line per test file with its duration, from
 * the runner's per-file summary, so the suite can name its slowest files after a run.
 */
export default async function* fileDurations(source: AsyncIterable<{ type: string; data: unknown }>): AsyncGenerator<string> {
  for await (const event of source) {
    if (event.type !== 'test:summary') continue;
    const data = event.data as { file?: string; duration_ms: number; success: boolean };
    if (data.file !== undefined) yield `${JSON.stringify({ file: data.file, ms: Math.round(data.duration_ms), success: data.success })}\n`;
  }
}
