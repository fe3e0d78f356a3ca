import type { Section } from './report.ts';
export function goalsTable(_sections: Section[]): string {
  return '';
}
