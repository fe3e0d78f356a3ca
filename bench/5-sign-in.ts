import type { BenchContext } from './lib/context.ts';
import type { Section } from './lib/report.ts';

export async function signIn(_ctx: BenchContext): Promise<Section> {
  throw new Error('todo');
}
