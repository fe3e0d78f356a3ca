import { hash as digest, type KeyObject } from 'node:crypto';
import { CompactSign } from 'jose';

/**
 * The tamper-evidence of the audit trail: every record carries `seq` (one more than the previous)
 * and `prev` (the SHA-256 of the previous record's line), so an altered or removed line breaks the
 * chain at that point; every so often a checkpoint record signs the chain head (seq + hash) with the
 * gateway's signing key (ES256, the key published at /.well-known/jwks.json), so a rewritten chain
 * cannot be passed off as the original up to the last checkpoint.
 */
export interface ChainHead {
  /** Sequence number of the last record written (0 before the first). */
  seq: number;
  /** SHA-256 (base64url) of the last record's line; for the first record a random chain id. */
  hash: string;
}

export const CHECKPOINT_EVENT = 'audit.checkpoint';

/** SHA-256 (base64url) of one JSON line, without its newline. */
export function lineHash(line: string): string {
  // The one-shot digest: half the CPU of a Hash object per line.
  return digest('sha256', line, 'base64url');
}

/** What a checkpoint signs (JWS payload, RFC 7515 compact serialization). */
export interface CheckpointPayload {
  seq: number;
  hash: string;
  /** The writing replica (`service.instance.id`). */
  instance: string;
}

export function createChain(head: ChainHead, signing: { key: KeyObject; kid: string }, instance: string) {
  let { seq, hash } = head;
  return {
    /** The record as its line: `seq` and `prev` first, then the event's own fields. */
    append(event: Record<string, unknown>): string {
      // `seq` and `prev` written before the event's own JSON (no copy of the event per record).
      const fields = event['seq'] === undefined && event['prev'] === undefined ? JSON.stringify(event) : JSON.stringify({ ...event, seq: undefined, prev: undefined });
      const line = `{"seq":${seq + 1},"prev":${JSON.stringify(hash)}${fields === '{}' ? '}' : `,${fields.slice(1)}`}`;
      seq += 1;
      hash = lineHash(line);
      return line;
    },
    /** A checkpoint line signing the current head (itself chained like any record). */
    async checkpoint(time: string): Promise<string> {
      const payload: CheckpointPayload = { seq, hash, instance };
      const signature = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
        .setProtectedHeader({ alg: 'ES256', kid: signing.kid })
        .sign(signing.key);
      return this.append({ time, 'event.name': CHECKPOINT_EVENT, 'service.instance.id': instance, checkpoint: signature });
    },
    get head(): ChainHead {
      return { seq, hash };
    },
  };
}
