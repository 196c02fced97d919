/**
 * containerd's own reference form ("Spec"): a locator ("host/path") and an object (a tag,
 * "@digest" or "tag@digest"). No normalization happens here: the locator must start with a host.
 */
import { InvalidArgumentError } from '../../core/errdefs/errdefs.js';
import { digestProblem } from './digest.js';

export interface Spec {
  /** "host[:port]/repository/path" */
  locator: string;
  /** "", "tag", "@sha256:…" or "tag@sha256:…" */
  object: string;
}

/** Parses "host/path[:tag][@digest]" into locator and object. */
export function parseSpec(s: string): Spec {
  if (s.includes('://')) throw new InvalidArgumentError(`invalid reference "${s}": a URL scheme is not part of a reference`);
  const slash = s.indexOf('/');
  const host = slash >= 0 ? s.slice(0, slash) : s;
  if (host === '' || /[@\s]/.test(host)) throw new InvalidArgumentError(`invalid reference "${s}": hostname required`);
  let rest = slash >= 0 ? s.slice(slash) : '';
  let object = '';
  const split = rest.search(/[:@]/);
  if (split >= 0) {
    object = rest.slice(split);
    if (object.startsWith(':')) object = object.slice(1);
    rest = rest.slice(0, split);
  }
  const path = rest.split('/').filter((p) => p !== '' && p !== '.').join('/');
  return { locator: path ? `${host}/${path}` : host, object };
}

/** The host part of a spec's locator. */
export function specHostname(spec: Spec): string {
  const i = spec.locator.indexOf('/');
  return i < 0 ? spec.locator : spec.locator.slice(0, i);
}

/** Splits an object into its tag and digest ("tag@digest", "@digest", "tag"). */
export function splitObject(object: string): { tag: string; digest?: string } {
  const i = object.indexOf('@');
  if (i < 0) return { tag: object };
  return { tag: object.slice(0, i), digest: object.slice(i + 1) };
}

/** The digest in a spec's object, validated; undefined when it has none. */
export function specDigest(spec: Spec): string | undefined {
  const { digest } = splitObject(spec.object);
  if (digest === undefined) return undefined;
  const problem = digestProblem(digest);
  if (problem) throw new InvalidArgumentError(`invalid reference "${specString(spec)}": ${problem}`);
  return digest;
}

/** Formats a spec back into a reference string. */
export function specString(spec: Spec): string {
  if (spec.object === '') return spec.locator;
  if (spec.object.startsWith('@')) return spec.locator + spec.object;
  return `${spec.locator}:${spec.object}`;
}
