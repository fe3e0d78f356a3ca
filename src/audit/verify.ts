import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import { CHECKPOINT_EVENT, type CheckpointPayload, lineHash } from './chain.ts';

export interface VerifyReport {
  records: number;
  firstSeq?: number;
  lastSeq?: number;
  checkpoints: number;
  /** Checkpoints whose signature was checked (all of them when keys were given). */
  verifiedCheckpoints: number;
  /** The first break found, naming the record; undefined when the file is intact. */
  problem?: string;
}

/**
 * Checks an audit file (chain.ts): consecutive `seq`, each `prev` equal to the hash of the line
 * before, and each checkpoint's ES256 signature (with `keys`, e.g. the gateway's
 * /.well-known/jwks.json) over the head it follows. Stops at the first break and names it.
 * The first line's `prev` points into the previous (rotated) file and is not checked.
 */
export async function verifyAuditFile(path: string, keys?: JSONWebKeySet): Promise<VerifyReport> {
  const lines = (await readFile(path, 'utf8')).split('\n');
  if (lines.at(-1) === '') lines.pop();
  const keySet = keys ? createLocalJWKSet(keys) : undefined;
  const report: VerifyReport = { records: 0, checkpoints: 0, verifiedCheckpoints: 0 };
  let previous: { seq: number; line: string } | undefined;
  for (const [index, line] of lines.entries()) {
    const at = `line ${index + 1}`;
    let record: { seq?: unknown; prev?: unknown; 'event.name'?: unknown; checkpoint?: unknown };
    try {
      record = JSON.parse(line);
    } catch {
      return { ...report, problem: `${at}${previous ? ` (after seq ${previous.seq})` : ''} is not a JSON record: altered or torn` };
    }
    if (typeof record.seq !== 'number' || typeof record.prev !== 'string') {
      return { ...report, problem: `${at} has no seq/prev: not an audit record` };
    }
    if (previous) {
      if (record.seq > previous.seq + 1) {
        const missing = record.seq - previous.seq - 1;
        return { ...report, problem: `record seq ${previous.seq + 1}${missing > 1 ? `–${record.seq - 1}` : ''} missing: ${at} has seq ${record.seq} after seq ${previous.seq}` };
      }
      if (record.seq !== previous.seq + 1) return { ...report, problem: `${at} has seq ${record.seq} after seq ${previous.seq}: out of order` };
      if (record.prev !== lineHash(previous.line)) {
        return { ...report, problem: `record seq ${previous.seq} (line ${index}) was altered: its hash does not match seq ${record.seq}'s prev` };
      }
    }
    report.records++;
    report.firstSeq ??= record.seq;
    report.lastSeq = record.seq;
    if (record['event.name'] === CHECKPOINT_EVENT) {
      report.checkpoints++;
      if (keySet) {
        const problem = await checkpointProblem(String(record.checkpoint), keySet, previous, record.prev);
        if (problem) return { ...report, problem: `checkpoint seq ${record.seq} (${at}): ${problem}` };
        report.verifiedCheckpoints++;
      }
    }
    previous = { seq: record.seq, line };
  }
  return report;
}

async function checkpointProblem(
  jws: string,
  keys: ReturnType<typeof createLocalJWKSet>,
  previous: { seq: number } | undefined,
  prev: string,
): Promise<string | undefined> {
  let payload: CheckpointPayload;
  try {
    const verified = await compactVerify(jws, keys, { algorithms: ['ES256'] });
    payload = JSON.parse(new TextDecoder().decode(verified.payload)) as CheckpointPayload;
  } catch (error) {
    return `signature does not verify (${(error as Error).message})`;
  }
  if (payload.hash !== prev || (previous && payload.seq !== previous.seq)) return `signs seq ${payload.seq}, not the record before it`;
  return undefined;
}

/** `audit verify`: prints the verdict; returns the exit status (0 intact, 1 broken). */
export async function verifyAuditCommand(file: string, jwks: string | undefined): Promise<number> {
  const keys = jwks === undefined ? undefined : await readJwks(jwks);
  const report = await verifyAuditFile(resolve(file), keys);
  const span = report.records === 0 ? 'no records' : `${report.records} records (seq ${report.firstSeq}–${report.lastSeq})`;
  const checkpoints = keys ? `${report.verifiedCheckpoints} of ${report.checkpoints} checkpoints verified` : `${report.checkpoints} checkpoints, signatures not checked (no --jwks)`;
  if (report.problem) {
    process.stdout.write(`broken: ${report.problem}\n  intact before it: ${span}, ${checkpoints}\n`);
    return 1;
  }
  process.stdout.write(`intact: ${span}, ${checkpoints}\n`);
  return 0;
}

async function readJwks(source: string): Promise<JSONWebKeySet> {
  const text = /^https?:\/\//.test(source) ? await (await fetch(source)).text() : readFileSync(resolve(source), 'utf8');
  return JSON.parse(text) as JSONWebKeySet;
}
