/** One benchmark's outcome: a table plus notes, printed and appended to RESULTS.md. */
export interface Section {
  id: number;
  title: string;
  columns: string[];
  rows: (string | number)[][];
  notes: string[];
  /** Named figures the goals table reads (e.g. ratio16). */
  figures: Record<string, number>;
  /** Further markdown after the notes (a second table). */
  extra?: string;
  /** Set when the benchmark could not run (e.g. nginx missing in quick mode). */
  skipped?: string;
}

export function markdownTable(columns: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.map(String).join(' | ')} |`;
  return [line(columns), line(columns.map(() => '---')), ...rows.map(line)].join('\n');
}

export function renderSection(section: Section): string {
  const parts = [`### ${section.id}. ${section.title}`, ''];
  if (section.skipped) parts.push(`Skipped: ${section.skipped}`, '');
  if (section.rows.length > 0) parts.push(markdownTable(section.columns, section.rows), '');
  for (const note of section.notes) parts.push(`- ${note}`);
  if (section.notes.length > 0) parts.push('');
  if (section.extra) parts.push(section.extra, '');
  return parts.join('\n');
}

export const round = (value: number, digits = 2) => {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};

export const fmtInt = (value: number) => Math.round(value).toLocaleString('en-US');
