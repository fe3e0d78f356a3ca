/** Snippet name and content rules, shared by the tools and both storages. */

export const SNIPPET_NAME_MAX_CHARS = 128;
export const DEFAULT_MAX_SNIPPET_BYTES = 1024 * 1024;

/** 1–128 characters of A-Z a-z 0-9 . _ - (ECMA-262 syntax, so it doubles as a JSON Schema `pattern`). */
export const SNIPPET_NAME_PATTERN = `^[A-Za-z0-9._-]{1,${SNIPPET_NAME_MAX_CHARS}}$`;
const NAME_RE = new RegExp(SNIPPET_NAME_PATTERN);

export const NAME_RULE = `1-${SNIPPET_NAME_MAX_CHARS} characters of A-Z a-z 0-9 . _ - (not "." or "..")`;

/** Returns why `name` is not a valid snippet name, or undefined when it is. */
export function snippetNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'Snippet name is empty: use ' + NAME_RULE;
  if (name.length > SNIPPET_NAME_MAX_CHARS) {
    return `Snippet name is ${name.length} characters long; the limit is ${SNIPPET_NAME_MAX_CHARS}`;
  }
  if (name === '.' || name === '..') return `Snippet name "${name}" is not allowed: use ${NAME_RULE}`;
  if (!NAME_RE.test(name)) return `Snippet name ${JSON.stringify(name)} is invalid: use ${NAME_RULE}`;
  return undefined;
}

export function isValidSnippetName(name: string): boolean {
  return snippetNameProblem(name) === undefined;
}

/** Throws when `name` is not a valid snippet name; storages call it so no path can escape their folder. */
export function assertValidSnippetName(name: string): void {
  const problem = snippetNameProblem(name);
  if (problem) throw new RangeError(problem);
}

/** Returns why `content` cannot be saved, or undefined when it can. */
export function snippetContentProblem(content: string, maxBytes: number): string | undefined {
  if (content.length === 0) return 'Snippet content is empty: pass the text to save in "snippet"';
  const bytes = Buffer.byteLength(content, 'utf8');
  if (bytes > maxBytes) return `Snippet content is ${bytes} bytes (UTF-8); the limit is ${maxBytes} bytes`;
  return undefined;
}
