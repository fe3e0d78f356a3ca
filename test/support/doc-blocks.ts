import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = new URL('../..', import.meta.url).pathname;

export interface DocBlock {
  /** Path from the repository root, e.g. `docs/production.md`. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The fence's info string: `yaml`, `sh`, … */
  lang: string;
  /** The nearest `#` heading above the block. */
  heading: string;
  text: string;
}

/** Every fenced block of README.md and docs/*.md, in order. */
export function docBlocks(): DocBlock[] {
  const files = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  const blocks: DocBlock[] = [];
  for (const file of files) {
    const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
    let heading = '';
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (/^#{1,6} /.test(line)) heading = line.replace(/^#+ /, '');
      const open = /^```(\S*)/.exec(line);
      if (!open) continue;
      const end = lines.findIndex((l, j) => j > i && l.startsWith('```'));
      blocks.push({ file, line: i + 1, lang: open[1] ?? '', heading, text: lines.slice(i + 1, end).join('\n') });
      i = end;
    }
  }
  return blocks;
}
