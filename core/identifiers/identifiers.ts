/**
 * containerd's identifier rule for namespaces, container, task and exec ids and event topic
 * components. Identifiers end up as path components and in mount options, so the rule is
 * deliberately narrow: alphanumeric runs joined by single `.`, `_` or `-`, at most 76 chars.
 */
import { InvalidArgumentError } from '../errdefs/errdefs.js';

export const MAX_IDENTIFIER_LENGTH = 76;
const IDENTIFIER = /^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$/;

/** Throws InvalidArgumentError unless `s` is a valid identifier. */
export function validateIdentifier(s: string): void {
  if (!s) throw new InvalidArgumentError('identifier must not be empty');
  if (s.length > MAX_IDENTIFIER_LENGTH) {
    throw new InvalidArgumentError(`identifier ${JSON.stringify(s)} greater than maximum length (${MAX_IDENTIFIER_LENGTH} characters)`);
  }
  if (!IDENTIFIER.test(s)) {
    throw new InvalidArgumentError(`identifier ${JSON.stringify(s)} must match ${IDENTIFIER.source}`);
  }
}

export const isIdentifier = (s: string) => s.length > 0 && s.length <= MAX_IDENTIFIER_LENGTH && IDENTIFIER.test(s);
