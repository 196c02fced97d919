/**
 * Platform specifiers and matching with containerd's rules: "os[/arch[/variant]]" parsing and
 * normalisation (x86_64 → amd64, aarch64 → arm64, arm → arm/v7…), and matchers that also order
 * candidates (Only accepts compatible platforms - amd64 runs 386, arm64 runs arm/v8…v5 - and
 * prefers the closest).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../../core/errdefs/errdefs.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Matcher {
  match(p: Platform): boolean;
}

/** A matcher that can also rank two platforms (the more preferred one is "less"). */
export interface MatchComparer extends Matcher {
  less(a: Platform, b: Platform): boolean;
}

const SPECIFIER = /^[A-Za-z0-9_-]+$/;

const KNOWN_OS = new Set(['aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'hurd', 'illumos', 'ios', 'js', 'linux', 'nacl', 'netbsd', 'openbsd', 'plan9', 'solaris', 'windows', 'zos']);
const KNOWN_ARCH = new Set(['386', 'amd64', 'amd64p32', 'arm', 'armbe', 'arm64', 'arm64be', 'ppc64', 'ppc64le', 'loong64', 'mips', 'mipsle', 'mips64', 'mips64le', 'mips64p32', 'mips64p32le', 'ppc', 'riscv', 'riscv64', 's390', 's390x', 'sparc', 'sparc64', 'wasm']);

/** Go's GOARCH for this process. */
export function hostArchitecture(): string {
  switch (process.arch) {
    case 'x64': return 'amd64';
    case 'ia32': return '386';
    case 'arm64': return 'arm64';
    case 'arm': return 'arm';
    case 'ppc64': return 'ppc64le';
    case 'loong64': return 'loong64';
    default: return process.arch;
  }
}

let variantCache: string | undefined;

/** The CPU variant containerd reports: v6/v7/v8 on arm (from /proc/cpuinfo), '' elsewhere. */
export function hostVariant(): string {
  if (variantCache !== undefined) return variantCache;
  variantCache = '';
  const arch = hostArchitecture();
  if (arch === 'arm' || arch === 'arm64') {
    try {
      const info = readFileSync('/proc/cpuinfo', 'utf8');
      const m = /^CPU architecture\s*:\s*(\S+)/m.exec(info);
      const v = m?.[1] ?? '';
      if (v === '8' || v === 'AArch64') variantCache = arch === 'arm64' ? 'v8' : 'v8';
      else if (v === '7' || v === '7M') variantCache = 'v7';
      else if (v === '6' || v === '6TEJ') variantCache = 'v6';
      else if (v === '5' || v === '5T' || v === '5TE' || v === '5TEJ') variantCache = 'v5';
    } catch {
      /* not linux */
    }
  }
  return variantCache;
}

function normalizeOS(os: string): string {
  if (!os) return 'linux';
  const lower = os.toLowerCase();
  return lower === 'macos' ? 'darwin' : lower;
}

function normalizeArch(arch: string, variant: string): [string, string] {
  let a = arch.toLowerCase();
  let v = variant.toLowerCase();
  switch (a) {
    case 'i386':
      a = '386';
      v = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      a = 'amd64';
      if (v === 'v1') v = '';
      break;
    case 'aarch64':
    case 'arm64':
      a = 'arm64';
      if (v === '8' || v === 'v8') v = '';
      break;
    case 'armhf':
      a = 'arm';
      v = 'v7';
      break;
    case 'armel':
      a = 'arm';
      v = 'v6';
      break;
    case 'arm':
      if (v === '' || v === '7') v = 'v7';
      else if (v === '5' || v === '6' || v === '8') v = `v${v}`;
      break;
  }
  return [a, v];
}

/** The canonical form of a platform (what matchers compare). */
export function normalize(p: Platform): Platform {
  const [architecture, variant] = normalizeArch(p.architecture ?? '', p.variant ?? '');
  const out: Platform = { os: normalizeOS(p.os ?? ''), architecture };
  if (variant) out.variant = variant;
  if (p['os.version']) out['os.version'] = p['os.version'];
  if (p['os.features']?.length) out['os.features'] = [...p['os.features']];
  return out;
}

/** Parses "os", "arch", "os/arch" or "os/arch/variant" as containerd does. */
export function parse(specifier: string): Platform {
  if (specifier.includes('*')) throw new InvalidArgumentError(`${JSON.stringify(specifier)}: wildcards not yet supported`);
  const parts = specifier.split('/');
  for (const part of parts) {
    if (!SPECIFIER.test(part)) {
      throw new InvalidArgumentError(`${JSON.stringify(part)} is an invalid component of ${JSON.stringify(specifier)}: platform specifier component must match "^[A-Za-z0-9_-]+$"`);
    }
  }
  const withVariant = (os: string, arch: string, variant: string): Platform => (variant ? { os, architecture: arch, variant } : { os, architecture: arch });
  switch (parts.length) {
    case 1: {
      const os = normalizeOS(parts[0]!);
      if (KNOWN_OS.has(os)) {
        const arch = hostArchitecture();
        const v = hostVariant();
        return withVariant(os, arch, arch === 'arm' && v !== 'v7' ? v : '');
      }
      let [arch, variant] = normalizeArch(parts[0]!, '');
      if (arch === 'arm' && variant === 'v7') variant = '';
      if (KNOWN_ARCH.has(arch)) return withVariant('linux', arch, variant);
      throw new InvalidArgumentError(`${JSON.stringify(specifier)}: unknown operating system or architecture`);
    }
    case 2: {
      let [arch, variant] = normalizeArch(parts[1]!, '');
      if (arch === 'arm' && variant === 'v7') variant = '';
      return withVariant(normalizeOS(parts[0]!), arch, variant);
    }
    case 3: {
      let [arch, variant] = normalizeArch(parts[1]!, parts[2]!);
      if (arch === 'arm64' && variant === '') variant = 'v8';
      return withVariant(normalizeOS(parts[0]!), arch, variant);
    }
    default:
      throw new InvalidArgumentError(`${JSON.stringify(specifier)}: cannot parse platform specifier`);
  }
}

/** "os/arch[/variant]" ("unknown" without an os). */
export function format(p: Platform): string {
  if (!p.os) return 'unknown';
  return [p.os, p.architecture, p.variant].filter((x) => x).join('/');
}

/** This host's platform. */
export function defaultSpec(): Platform {
  const v = hostVariant();
  return v ? { os: 'linux', architecture: hostArchitecture(), variant: v } : { os: 'linux', architecture: hostArchitecture() };
}

export function defaultString(): string {
  return format(defaultSpec());
}

/** Matches exactly one platform (after normalisation). */
export function newMatcher(p: Platform): Matcher {
  const want = normalize(p);
  return {
    match(candidate) {
      const n = normalize(candidate);
      return n.os === want.os && n.architecture === want.architecture && (n.variant ?? '') === (want.variant ?? '');
    },
  };
}

/** The platforms `p` can run, best first (amd64/vN → lower vN → 386; arm64 → arm/v8…v5; arm/vN → lower). */
function platformVector(p: Platform): Platform[] {
  const out: Platform[] = [p];
  const variantNum = (v: string | undefined) => Number.parseInt((v ?? '').replace(/^v/, ''), 10);
  switch (p.architecture) {
    case 'amd64': {
      const n = variantNum(p.variant);
      if (Number.isFinite(n) && n > 1) for (let i = n - 1; i >= 1; i--) out.push({ ...p, variant: `v${i}` });
      out.push({ os: p.os, architecture: '386' });
      break;
    }
    case 'arm': {
      const n = variantNum(p.variant);
      if (Number.isFinite(n) && n > 5) for (let i = n - 1; i >= 5; i--) out.push({ ...p, variant: `v${i}` });
      break;
    }
    case 'arm64':
      out.push(...platformVector({ os: p.os, architecture: 'arm', variant: p.variant || 'v8' }));
      break;
  }
  return out;
}

/** Matches the listed platforms, preferring earlier ones. */
export function ordered(...platforms: Platform[]): MatchComparer {
  const matchers = platforms.map(newMatcher);
  return {
    match: (p) => matchers.some((m) => m.match(p)),
    less(a, b) {
      for (const m of matchers) {
        const am = m.match(a);
        const bm = m.match(b);
        if (am && !bm) return true;
        if (am || bm) return false;
      }
      return false;
    },
  };
}

/** Matches any of the platforms, with no preference between them. */
export function any(...platforms: Platform[]): MatchComparer {
  const matchers = platforms.map(newMatcher);
  return {
    match: (p) => matchers.some((m) => m.match(p)),
    less(a, b) {
      const am = matchers.some((m) => m.match(a));
      const bm = matchers.some((m) => m.match(b));
      return am && !bm;
    },
  };
}

/** Matches everything. */
export const all: MatchComparer = Object.freeze({ match: () => true, less: () => false });

/** `p` and everything it can run, preferring the closest. */
export function only(p: Platform): MatchComparer {
  return ordered(...platformVector(normalize(p)));
}

/** Exactly `p`. */
export function onlyStrict(p: Platform): MatchComparer {
  return ordered(normalize(p));
}

/** The host's platform and what it can run (containerd's platforms.Default()). */
export function defaultMatcher(): MatchComparer {
  return only(defaultSpec());
}

export function defaultStrict(): MatchComparer {
  return onlyStrict(defaultSpec());
}

/** Sorts descriptors with platforms by preference; ones without a platform go last (stable). */
export function sortByPreference<T extends { platform?: Platform }>(items: T[], m: MatchComparer): T[] {
  return items
    .map((item, i) => ({ item, i }))
    .sort((x, y) => {
      const a = x.item.platform;
      const b = y.item.platform;
      if (!a && !b) return x.i - y.i;
      if (!a) return 1;
      if (!b) return -1;
      if (m.less(a, b)) return -1;
      if (m.less(b, a)) return 1;
      return x.i - y.i;
    })
    .map((x) => x.item);
}
