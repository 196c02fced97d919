/**
 * Content digests ("<algorithm>:<hex>") as used by OCI descriptors and image references.
 * Validation follows the OCI digest rules: a registered algorithm, its exact hex length,
 * lowercase hex only.
 */
import { createHash, type Hash } from 'node:crypto';
import { InvalidArgumentError } from '../../core/errdefs/errdefs.js';

/** Hex length of each supported algorithm's encoded part. */
export const DIGEST_ALGORITHMS: Readonly<Record<string, number>> = Object.freeze({
  sha256: 64,
  sha384: 96,
  sha512: 128,
});

/** The general digest grammar (any algorithm, any hex of 32+ characters). */
export const DIGEST_PATTERN = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const anchoredDigest = new RegExp(`^${DIGEST_PATTERN}$`);

/** Why `value` is not a valid digest, or undefined when it is. */
export function digestProblem(value: string): string | undefined {
  const i = value.indexOf(':');
  if (i <= 0 || i === value.length - 1) return 'invalid digest format';
  const algorithm = value.slice(0, i);
  const encoded = value.slice(i + 1);
  const hexLength = Object.prototype.hasOwnProperty.call(DIGEST_ALGORITHMS, algorithm) ? DIGEST_ALGORITHMS[algorithm] : undefined;
  if (hexLength === undefined) {
    return anchoredDigest.test(value) ? `unsupported digest algorithm "${algorithm}"` : 'invalid digest format';
  }
  if (encoded.length !== hexLength) return `invalid checksum digest length (${algorithm} needs ${hexLength} hex characters, got ${encoded.length})`;
  if (!/^[a-f0-9]+$/.test(encoded)) return 'invalid checksum digest format (lowercase hex expected)';
  return undefined;
}

/** True when `value` is a valid, supported digest. */
export function isDigest(value: string): boolean {
  return digestProblem(value) === undefined;
}

/** Returns `value` when it is a valid digest; throws InvalidArgumentError naming it otherwise. */
export function validateDigest(value: string): string {
  const problem = digestProblem(value);
  if (problem) throw new InvalidArgumentError(`invalid digest "${value}": ${problem}`);
  return value;
}

/** The algorithm part of a digest (validated). */
export function digestAlgorithm(value: string): string {
  return validateDigest(value).slice(0, value.indexOf(':'));
}

/** The hex part of a digest (validated). */
export function digestEncoded(value: string): string {
  return validateDigest(value).slice(value.indexOf(':') + 1);
}

/** A hash object for the algorithm of `digest` (validated). */
export function hasherFor(digest: string): Hash {
  return createHash(digestAlgorithm(digest));
}

/** The digest of `data` with `algorithm` (sha256 by default). */
export function digestOf(data: Uint8Array | string, algorithm = 'sha256'): string {
  if (!(algorithm in DIGEST_ALGORITHMS)) throw new InvalidArgumentError(`unsupported digest algorithm "${algorithm}"`);
  return `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
}
