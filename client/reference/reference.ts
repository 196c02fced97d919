/**
 * Image reference parsing with Docker-style normalization, as containerd (and docker) do it:
 *
 *   busybox                    → docker.io/library/busybox:latest   (parseDockerRef)
 *   host:5000/a/b:tag          → domain host:5000, path a/b, tag "tag"
 *   name@sha256:<hex>          → canonical (digest) reference
 *   name:tag@sha256:<hex>      → both kept by parse/parseNormalizedNamed; parseDockerRef drops the tag
 *
 * The grammar:
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ domain "/" ] component ( "/" component )*
 *   domain     := domain-component ( "." domain-component )* [ ":" port ]
 *   component  := [a-z0-9]+ ( separator [a-z0-9]+ )*      separator := "." | "_" | "__" | "-"+
 *   tag        := [\w][\w.-]{0,127}
 *
 * Every validation failure is an InvalidArgumentError that names the reference and the problem.
 */
import { InvalidArgumentError } from '../../core/errdefs/errdefs.js';
import { DIGEST_PATTERN, digestProblem } from './digest.js';

/** Longest repository name (domain + "/" + path) accepted. */
export const NAME_TOTAL_LENGTH_MAX = 255;
export const DEFAULT_DOMAIN = 'docker.io';
export const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
export const OFFICIAL_REPO_PREFIX = 'library';
export const DEFAULT_TAG = 'latest';

// Each piece is written so that no two quantifiers can match the same text (no catastrophic
// backtracking on hostile input): separators are never empty, so each repetition must consume one.
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN_COMPONENT = '[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?';
const DOMAIN = `${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*(?::[0-9]+)?`;
const TAG = '[\\w][\\w.-]{0,127}';
const NAME = `(?:${DOMAIN}/)?${COMPONENT}(?:/${COMPONENT})*`;

const anchoredReference = new RegExp(`^(${NAME})(?::(${TAG}))?(?:@(${DIGEST_PATTERN}))?$`);
const anchoredName = new RegExp(`^(?:(${DOMAIN})/)?(${COMPONENT}(?:/${COMPONENT})*)$`);
const anchoredTag = new RegExp(`^${TAG}$`);
const anchoredDomain = new RegExp(`^${DOMAIN}$`);
const anchoredPath = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const anchoredIdentifier = /^[a-f0-9]{64}$/;

function invalid(ref: string, problem: string): never {
  const shown = ref.length > 300 ? `${ref.slice(0, 300)}…` : ref;
  throw new InvalidArgumentError(`invalid reference "${shown}": ${problem}`);
}

/** The parts of a reference, as plain data. */
export interface ReferenceParts {
  /** Registry host[:port]; empty only for references parsed without normalization that carry none. */
  domain: string;
  /** Repository path inside the registry, e.g. "library/busybox". */
  path: string;
  tag?: string;
  digest?: string;
}

/** A parsed, validated image reference. Immutable. */
export class Reference implements ReferenceParts {
  readonly domain: string;
  readonly path: string;
  readonly tag?: string;
  readonly digest?: string;

  constructor(parts: ReferenceParts) {
    this.domain = parts.domain;
    this.path = parts.path;
    if (parts.tag !== undefined) this.tag = parts.tag;
    if (parts.digest !== undefined) this.digest = parts.digest;
  }

  /** Repository name: "domain/path" (or just the path when there is no domain). */
  get name(): string {
    return this.domain ? `${this.domain}/${this.path}` : this.path;
  }

  /** The repository name in Docker's short form: "busybox", "user/app", "quay.io/x/y". */
  get familiarName(): string {
    return familiarizeName(this.domain, this.path);
  }

  /** containerd's "object": "tag", "@digest" or "tag@digest" (empty when the reference has neither). */
  get object(): string {
    if (this.tag !== undefined && this.digest !== undefined) return `${this.tag}@${this.digest}`;
    if (this.digest !== undefined) return `@${this.digest}`;
    return this.tag ?? '';
  }

  /** The full reference: name[:tag][@digest]. */
  toString(): string {
    return this.name + (this.tag !== undefined ? `:${this.tag}` : '') + (this.digest !== undefined ? `@${this.digest}` : '');
  }

  /** The reference in Docker's short form: "busybox:latest", "user/app@sha256:…". */
  familiarString(): string {
    return this.familiarName + (this.tag !== undefined ? `:${this.tag}` : '') + (this.digest !== undefined ? `@${this.digest}` : '');
  }

  toJSON(): string {
    return this.toString();
  }

  /** Neither tag nor digest. */
  isNameOnly(): boolean {
    return this.tag === undefined && this.digest === undefined;
  }

  /** The same repository with `tag` (keeps any digest). */
  withTag(tag: string): Reference {
    if (!anchoredTag.test(tag)) invalid(`${this.name}:${tag}`, `invalid tag format "${tag}"`);
    return new Reference({ domain: this.domain, path: this.path, tag, digest: this.digest });
  }

  /** The same repository with `digest` (keeps any tag). */
  withDigest(digest: string): Reference {
    const problem = digestProblem(digest);
    if (problem) invalid(`${this.name}@${digest}`, problem);
    return new Reference({ domain: this.domain, path: this.path, tag: this.tag, digest });
  }

  /** Only the repository name (no tag, no digest). */
  trimmed(): Reference {
    return new Reference({ domain: this.domain, path: this.path });
  }

  /** Plain data form. */
  parts(): ReferenceParts {
    const out: ReferenceParts = { domain: this.domain, path: this.path };
    if (this.tag !== undefined) out.tag = this.tag;
    if (this.digest !== undefined) out.digest = this.digest;
    return out;
  }
}

/** A reference that is only a digest (what parseAnyReference returns for "sha256:…"). */
export class DigestReference {
  constructor(readonly digest: string) {}
  toString(): string {
    return this.digest;
  }
  toJSON(): string {
    return this.digest;
  }
}

/**
 * Parses a reference exactly as written, without Docker normalization: "busybox" has no domain
 * (domain ""), and "foo/bar" is domain "foo", path "bar".
 */
export function parse(s: string): Reference {
  const m = anchoredReference.exec(s);
  if (!m) {
    if (s === '') invalid(s, 'repository name must have at least one component');
    if (anchoredReference.test(s.toLowerCase())) invalid(s, 'repository name must be lowercase');
    invalid(s, describeFormatProblem(s));
  }
  const [, name, tag, digest] = m;
  if (name.length > NAME_TOTAL_LENGTH_MAX) {
    invalid(s, `repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  const nm = anchoredName.exec(name);
  const domain = nm?.[1] ?? '';
  const path = nm ? nm[2] : name;
  if (digest !== undefined) {
    const problem = digestProblem(digest);
    if (problem) invalid(s, problem);
  }
  return new Reference({ domain, path, tag, digest });
}

/**
 * Parses a reference the way `docker pull`/`ctr` users write it and normalizes it to its full
 * form: the default domain docker.io (index.docker.io is folded into it), and "library/" for
 * single-component docker.io names. No default tag is added (see parseDockerRef).
 */
export function parseNormalizedNamed(s: string): Reference {
  if (s === '') invalid(s, 'repository name must have at least one component');
  if (anchoredIdentifier.test(s)) {
    invalid(s, 'cannot specify 64-byte hexadecimal strings as a repository name');
  }
  const [domain, remainder] = splitDockerDomain(s);
  const colon = remainder.indexOf(':');
  const remoteName = colon >= 0 ? remainder.slice(0, colon) : remainder;
  if (remoteName.toLowerCase() !== remoteName) invalid(s, 'repository name must be lowercase');
  try {
    return parse(`${domain}/${remainder}`);
  } catch (err) {
    // Re-word the message so it names what the caller wrote, not the normalized form.
    if (err instanceof InvalidArgumentError) {
      const detail = /^invalid reference "[^"]*": (.*): invalid argument$/.exec(err.message)?.[1] ?? err.message;
      invalid(s, detail);
    }
    throw err;
  }
}

/**
 * The reference containerd pulls for user input: normalized, with the "latest" tag when neither
 * tag nor digest is given, and with the tag dropped when a digest pins the content.
 */
export function parseDockerRef(s: string): Reference {
  const named = parseNormalizedNamed(s);
  if (named.digest !== undefined) return new Reference({ domain: named.domain, path: named.path, digest: named.digest });
  return tagNameOnly(named);
}

/** Adds the default tag to a name-only reference; returns other references unchanged. */
export function tagNameOnly(ref: Reference): Reference {
  return ref.isNameOnly() ? ref.withTag(DEFAULT_TAG) : ref;
}

/**
 * Accepts a bare 64-hex identifier (as sha256), a digest, or a normalizable reference.
 */
export function parseAnyReference(s: string): Reference | DigestReference {
  if (anchoredIdentifier.test(s)) return new DigestReference(`sha256:${s}`);
  if (!s.includes('/') && digestProblem(s) === undefined) return new DigestReference(s);
  return parseNormalizedNamed(s);
}

/**
 * Splits normalized input into {domain, path, tag, digest}. Unless `defaultTag` is false, a
 * reference with neither tag nor digest gets "latest". A tag given together with a digest is kept.
 */
export function splitReference(s: string, options: { defaultTag?: boolean } = {}): ReferenceParts {
  const ref = parseNormalizedNamed(s);
  return (options.defaultTag === false ? ref : tagNameOnly(ref)).parts();
}

/** Docker's short form of a repository name: docker.io/library/x → x, docker.io/u/x → u/x. */
export function familiarName(ref: Reference | string): string {
  const r = typeof ref === 'string' ? parseNormalizedNamed(ref) : ref;
  return r.familiarName;
}

/** Docker's short form of a whole reference (tag and digest kept). */
export function familiarString(ref: Reference | string): string {
  const r = typeof ref === 'string' ? parseNormalizedNamed(ref) : ref;
  return r.familiarString();
}

/** True when `s` is a valid tag. */
export function isTag(s: string): boolean {
  return anchoredTag.test(s);
}

/** True when `s` is a valid registry domain (host[:port]). */
export function isDomain(s: string): boolean {
  return anchoredDomain.test(s);
}

/** True when `s` is a valid repository path ("a/b-c/d_e"). */
export function isRepositoryPath(s: string): boolean {
  return anchoredPath.test(s);
}

/**
 * Splits off the registry domain the way docker decides it: the first component is a domain when
 * it contains "." or ":" or is exactly "localhost"; otherwise the domain is docker.io.
 */
export function splitDockerDomain(name: string): [domain: string, remainder: string] {
  const i = name.indexOf('/');
  let domain: string;
  let remainder: string;
  if (i === -1 || (!/[.:]/.test(name.slice(0, i)) && name.slice(0, i) !== 'localhost')) {
    domain = DEFAULT_DOMAIN;
    remainder = name;
  } else {
    domain = name.slice(0, i);
    remainder = name.slice(i + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = `${OFFICIAL_REPO_PREFIX}/${remainder}`;
  return [domain, remainder];
}

function familiarizeName(domain: string, path: string): string {
  if (domain !== DEFAULT_DOMAIN) return domain ? `${domain}/${path}` : path;
  const parts = path.split('/');
  if (parts.length === 2 && parts[0] === OFFICIAL_REPO_PREFIX) return parts[1];
  return path;
}

/** A more specific message than "invalid reference format" for the common mistakes. */
function describeFormatProblem(s: string): string {
  const at = s.indexOf('@');
  const namePart = at >= 0 ? s.slice(0, at) : s;
  if (at >= 0) {
    const digest = s.slice(at + 1);
    if (digest.includes('@')) return 'invalid reference format: more than one "@"';
    const problem = digestProblem(digest);
    if (problem) return `invalid reference format: ${problem}`;
  }
  const lastSlash = namePart.lastIndexOf('/');
  const colon = namePart.indexOf(':', lastSlash + 1);
  if (colon >= 0) {
    const tag = namePart.slice(colon + 1);
    if (!anchoredTag.test(tag)) return `invalid reference format: invalid tag "${tag}"`;
  }
  if (s.includes('://')) return 'invalid reference format: a URL scheme is not part of a reference';
  if (/\s/.test(s)) return 'invalid reference format: contains whitespace';
  if (namePart.endsWith('/') || namePart.startsWith('/') || namePart.includes('//')) {
    return 'invalid reference format: empty path component';
  }
  return 'invalid reference format';
}
