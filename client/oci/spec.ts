/**
 * OCI runtime spec generation on the client, producing what containerd 1.6's `oci` package
 * (as `ctr run` composes it) stores in a container: the default Linux spec, the default
 * device allow-list, environment/args/cwd/user from an image config, and the ctr flags.
 * Objects are built with their keys in the Go structs' field order, so the JSON a container
 * carries reads the same as ctr's.
 */
import type { IDMapping } from '../userns.js';
import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { isAbsolute, posix } from 'node:path';
import { goErrnoText } from '../../core/sys/errno.js';

export interface SpecUser {
  uid: number;
  gid: number;
  umask?: number;
  additionalGids?: number[];
  username?: string;
}

export interface SpecProcess {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: SpecUser;
  args?: string[];
  commandLine?: string;
  env?: string[];
  cwd: string;
  capabilities?: { bounding?: string[]; effective?: string[]; inheritable?: string[]; permitted?: string[]; ambient?: string[] };
  rlimits?: { type: string; hard: number; soft: number }[];
  noNewPrivileges?: boolean;
  [key: string]: unknown;
}

export interface SpecMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface DeviceRule {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

export interface SpecLinux {
  resources?: {
    devices?: DeviceRule[];
    memory?: Record<string, unknown>;
    cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
    pids?: { limit: number };
    [key: string]: unknown;
  };
  cgroupsPath?: string;
  namespaces?: { type: string; path?: string }[];
  maskedPaths?: string[];
  readonlyPaths?: string[];
  [key: string]: unknown;
}

export interface Spec {
  ociVersion: string;
  process?: SpecProcess;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: SpecMount[];
  annotations?: Record<string, string>;
  linux?: SpecLinux;
  [key: string]: unknown;
}

/** The subset of an OCI image config (`config` of the image JSON) a spec is built from. */
export interface ImageConfig {
  User?: string;
  Env?: string[] | null;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  StopSignal?: string;
  Labels?: Record<string, string> | null;
}

export const SPEC_VERSION = '1.0.2-dev';
export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const DEFAULT_CAPABILITIES: readonly string[] = Object.freeze([
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
]);

const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi',
];
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export function defaultMounts(): SpecMount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  ];
}

/** containerd's default Linux spec for container `id` in `namespace` (oci.WithDefaultSpec). */
export function defaultSpec(namespace: string, id: string): Spec {
  return {
    ociVersion: SPEC_VERSION,
    process: {
      user: { uid: 0, gid: 0 },
      cwd: '/',
      capabilities: {
        bounding: [...DEFAULT_CAPABILITIES],
        effective: [...DEFAULT_CAPABILITIES],
        permitted: [...DEFAULT_CAPABILITIES],
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs' },
    mounts: defaultMounts(),
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      cgroupsPath: posix.join('/', namespace, id),
      namespaces: ['pid', 'ipc', 'uts', 'mount', 'network'].map((type) => ({ type })),
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
    },
  };
}

/** oci.WithDefaultUnixDevices: allows null, random, full, tty, zero, urandom, console, pts, ptmx. */
export function withDefaultUnixDevices(s: Spec): void {
  const linux = (s.linux ??= {});
  const res = (linux.resources ??= {});
  const c = (major: number, minor?: number): DeviceRule =>
    minor === undefined ? { allow: true, type: 'c', major, access: 'rwm' } : { allow: true, type: 'c', major, minor, access: 'rwm' };
  (res.devices ??= []).push(c(1, 3), c(1, 8), c(1, 7), c(5, 0), c(1, 5), c(1, 9), c(5, 1), c(136), c(5, 2));
}

/** Merges `overrides` into `defaults` by variable name; a bare `NAME` removes it. */
export function replaceOrAppendEnv(defaults: readonly string[], overrides: readonly string[]): string[] {
  const results: (string | undefined)[] = [];
  const index = new Map<string, number>();
  for (const e of defaults) {
    index.set(e.split('=', 1)[0]!, results.length);
    results.push(e);
  }
  for (const v of overrides) {
    if (!v.includes('=')) {
      const i = index.get(v);
      if (i !== undefined) results[i] = undefined;
      continue;
    }
    const i = index.get(v.split('=', 1)[0]!);
    if (i !== undefined) results[i] = v;
    else results.push(v);
  }
  return results.filter((e): e is string => e !== undefined && e !== '');
}

function processOf(s: Spec): SpecProcess {
  return (s.process ??= { user: { uid: 0, gid: 0 }, cwd: '' });
}

/** Reorders a process's keys into the Go struct's field order (after options added keys). */
function orderProcess(p: SpecProcess): SpecProcess {
  const order = ['terminal', 'consoleSize', 'user', 'args', 'commandLine', 'env', 'cwd', 'capabilities', 'rlimits', 'noNewPrivileges', 'apparmorProfile', 'oomScoreAdj', 'selinuxLabel'];
  const out: Record<string, unknown> = {};
  for (const k of order) if (p[k] !== undefined) out[k] = p[k];
  for (const [k, v] of Object.entries(p)) if (!(k in out) && v !== undefined) out[k] = v;
  return out as SpecProcess;
}

export function withEnv(s: Spec, env: readonly string[]): void {
  if (env.length === 0) return;
  const p = processOf(s);
  p.env = replaceOrAppendEnv(p.env ?? [], env);
}

export function withProcessArgs(s: Spec, args: readonly string[]): void {
  const p = processOf(s);
  p.args = [...args];
  delete p.commandLine;
}

export function withProcessCwd(s: Spec, cwd: string): void {
  processOf(s).cwd = cwd;
}

export function withTTY(s: Spec): void {
  const p = processOf(s);
  p.terminal = true;
  if (s.linux) p.env = [...(p.env ?? []), 'TERM=xterm'];
}

export function withHostname(s: Spec, name: string): void {
  s.hostname = name;
}

export function withRootFSPath(s: Spec, path: string): void {
  (s.root ??= { path: '' }).path = path;
}

export function withRootFSReadonly(s: Spec): void {
  (s.root ??= { path: '' }).readonly = true;
}

export function withMounts(s: Spec, mounts: readonly SpecMount[]): void {
  s.mounts = [...(s.mounts ?? []), ...mounts];
}

export function withAnnotations(s: Spec, annotations: Record<string, string>): void {
  if (Object.keys(annotations).length === 0) return;
  s.annotations = { ...(s.annotations ?? {}), ...annotations };
}

export function withCPUShares(s: Spec, shares: number): void {
  const res = ((s.linux ??= {}).resources ??= {});
  (res.cpu ??= {}).shares = shares;
}

export function withCPUCFS(s: Spec, quota: number, period: number): void {
  const res = ((s.linux ??= {}).resources ??= {});
  const cpu = (res.cpu ??= {});
  cpu.quota = quota;
  cpu.period = period;
}

export function withMemoryLimit(s: Spec, limit: number): void {
  const res = ((s.linux ??= {}).resources ??= {});
  (res.memory ??= {}).limit = limit;
}

export function withHostNamespace(s: Spec, type: string): void {
  const linux = (s.linux ??= {});
  linux.namespaces = (linux.namespaces ?? []).filter((n) => n.type !== type);
}

export function withLinuxNamespace(s: Spec, ns: { type: string; path?: string }): void {
  const linux = (s.linux ??= {});
  const list = (linux.namespaces ??= []);
  const i = list.findIndex((n) => n.type === ns.type);
  if (i >= 0) list[i] = ns;
  else list.push(ns);
}

/** A user namespace with these ID mappings, as containerd's WithUserNamespace (appended). */
export function withUserNamespace(s: Spec, uidMap: IDMapping, gidMap: IDMapping): void {
  const linux = (s.linux ??= {});
  const list = (linux.namespaces ??= []);
  if (!list.some((n) => n.type === 'user')) list.push({ type: 'user' });
  // Keys in the order Go marshals LinuxIDMapping.
  const entry = (m: IDMapping) => ({ containerID: m.containerID, hostID: m.hostID, size: m.size });
  linux.uidMappings = [...((linux.uidMappings as IDMapping[] | undefined) ?? []), entry(uidMap)];
  linux.gidMappings = [...((linux.gidMappings as IDMapping[] | undefined) ?? []), entry(gidMap)];
}

export function withNewPrivileges(s: Spec): void {
  processOf(s).noNewPrivileges = false;
}

export function withCgroup(s: Spec, path: string): void {
  (s.linux ??= {}).cgroupsPath = path;
}

export function withAddedCapabilities(s: Spec, caps: readonly string[]): void {
  const c = (processOf(s).capabilities ??= {});
  for (const set of ['bounding', 'effective', 'permitted'] as const) {
    const list = (c[set] ??= []);
    for (const cap of caps) if (!list.includes(cap)) list.push(cap);
  }
}

export function withDroppedCapabilities(s: Spec, caps: readonly string[]): void {
  const c = processOf(s).capabilities;
  if (!c) return;
  for (const set of ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const) {
    if (c[set]) c[set] = c[set]!.filter((x) => !caps.includes(x));
  }
}

/** Linux capability names by number (capability.h), as containerd's pkg/cap knows them. */
const CAPABILITY_NAMES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL',
  'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST', 'CAP_NET_ADMIN', 'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER',
  'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE', 'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP', 'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ', 'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** The names of the effective capabilities in a /proc/<pid>/status text (unknown bits left out). */
export function effectiveCapabilities(status: string): string[] {
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (!hex) return [];
  const bits = BigInt(`0x${hex}`);
  return CAPABILITY_NAMES.filter((_, i) => (bits >> BigInt(i)) & 1n);
}

/**
 * `--privileged`, as ctr composes it: the caller's effective capabilities in the bounding,
 * effective and permitted sets; no masked or read-only paths; writable sysfs and cgroupfs; no
 * seccomp, SELinux label or AppArmor profile; every device allowed, and the host's devices.
 */
export async function withPrivileged(s: Spec): Promise<void> {
  const caps = effectiveCapabilities(await readFile('/proc/self/status', 'utf8'));
  const c = (processOf(s).capabilities ??= {});
  c.bounding = [...caps];
  c.effective = [...caps];
  c.permitted = [...caps];
  const linux = (s.linux ??= {});
  delete linux.maskedPaths;
  delete linux.readonlyPaths;
  for (const m of s.mounts ?? []) {
    if ((m.type === 'sysfs' || m.type === 'cgroup') && m.options) m.options = m.options.map((o) => (o === 'ro' ? 'rw' : o));
  }
  delete processOf(s).selinuxLabel;
  delete processOf(s).apparmorProfile;
  delete linux.seccomp;
  (linux.resources ??= {}).devices = [{ allow: true, access: 'rwm' }];
  linux.devices = [...((linux.devices as unknown[] | undefined) ?? []), ...(await hostDevices('/dev'))];
}

/**
 * `--device PATH`: the device node at PATH, or every device below it when it is a directory,
 * added with a cgroup rule allowing `permissions` for each (containerd's WithDevices).
 */
export async function withDevices(s: Spec, path: string, permissions = 'rwm'): Promise<void> {
  let devices: Record<string, unknown>[];
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw new Error(`error stating device path: stat ${path}: ${goErrnoText(err as NodeJS.ErrnoException)}`, { cause: err });
  }
  if (st.isDirectory()) devices = await hostDevices(path);
  else {
    const one = await deviceAt(path, true);
    if (!one) throw new Error('not a device node');
    devices = [one];
  }
  const linux = (s.linux ??= {});
  const rules = ((linux.resources ??= {}).devices ??= []);
  linux.devices = (linux.devices as unknown[] | undefined) ?? [];
  for (const d of devices) {
    (linux.devices as unknown[]).push(d);
    rules.push({ allow: true, type: d.type as string, major: d.major as number, minor: d.minor as number, access: permissions });
  }
}

/**
 * The device node at `path` (not following a final symlink), in the OCI spec's form; undefined
 * when it is no device (or a fifo, unless `fifos`) or is gone.
 */
async function deviceAt(path: string, fifos: boolean): Promise<Record<string, unknown> | undefined> {
  let st;
  try {
    st = await lstat(path, { bigint: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const type = st.isBlockDevice() ? 'b' : st.isCharacterDevice() ? 'c' : st.isFIFO() && fifos ? 'p' : undefined;
  if (!type) return undefined;
  const rdev = st.rdev;
  // glibc's gnu_dev_major/minor.
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { type, path, major, minor, fileMode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid) };
}

/** Directories of /dev that hold no devices a container should get (containerd's list). */
const SKIPPED_DEV_DIRS = new Set(['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev']);

/** The host's device nodes below `dir`, walked as containerd's HostDevices does (sorted names). */
async function hostDevices(dir: string): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  const names = (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of names) {
    const path = posix.join(dir, e.name);
    if (e.isDirectory()) {
      if (!SKIPPED_DEV_DIRS.has(e.name)) out.push(...(await hostDevices(path)));
      continue;
    }
    if (e.name === 'console') continue;
    const device = await deviceAt(path, false);
    if (device) out.push(device);
  }
  return out;
}

// ------------------------------------------------------------------ users and groups

interface PasswdEntry { name: string; uid: number; gid: number }
interface GroupEntry { name: string; gid: number; members: string[] }

/**
 * Resolves `path` inside `root` the way a chroot would: symlinks (absolute ones relative to
 * root) are followed, and `..` never climbs above root.
 */
export async function rootPath(root: string, path: string): Promise<string> {
  const parts = posix.normalize('/' + path).split('/').filter(Boolean);
  let resolved: string[] = [];
  let hops = 0;
  while (parts.length) {
    const part = parts.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = posix.join(root, ...resolved, part);
    let st;
    try {
      st = await lstat(candidate);
    } catch {
      resolved.push(part);
      continue;
    }
    if (!st.isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++hops > 255) throw new Error(`too many levels of symbolic links resolving ${path} in ${root}`);
    const target = await readlink(candidate);
    if (target.startsWith('/')) resolved = [];
    parts.unshift(...target.split('/').filter(Boolean));
  }
  return posix.join(root, ...resolved);
}

async function readLines(root: string, file: string): Promise<string[]> {
  const text = await readFile(await rootPath(root, file), 'utf8');
  return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
}

function toInt(s: string | undefined): number {
  const n = Number.parseInt(s ?? '', 10);
  return Number.isFinite(n) ? n : 0;
}

export async function readPasswd(root: string): Promise<PasswdEntry[]> {
  return (await readLines(root, '/etc/passwd')).map((l) => {
    const f = l.split(':');
    return { name: f[0] ?? '', uid: toInt(f[2]), gid: toInt(f[3]) };
  });
}

export async function readGroups(root: string): Promise<GroupEntry[]> {
  return (await readLines(root, '/etc/group')).map((l) => {
    const f = l.split(':');
    return { name: f[0] ?? '', gid: toInt(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) };
  });
}

const MAX_ID = 2 ** 31 - 1;
const numericId = (s: string): number | undefined => (/^[+-]?\d+$/.test(s) && Number(s) >= 0 && Number(s) <= MAX_ID ? Number(s) : undefined);
const missing = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ENOENT';

function ensureAdditionalGids(p: SpecProcess): void {
  const u = p.user;
  const gids = u.additionalGids ?? [];
  if (!gids.includes(u.gid)) u.additionalGids = [u.gid, ...gids];
}

function requireAbsoluteRoot(s: Spec, root: string | undefined): string {
  const r = root ?? s.root?.path ?? '';
  if (!isAbsolute(r)) throw new Error('rootfs absolute path is required');
  return r;
}

/**
 * oci.WithUser: `uid`, `name`, `uid:gid`, `name:group` (and mixes). Names resolve through the
 * container's /etc/passwd and /etc/group under `root` (the mounted rootfs; default: the spec's
 * root path). The primary gid always ends up in additionalGids.
 */
export async function withUser(s: Spec, userstr: string, root?: string): Promise<void> {
  const p = processOf(s);
  p.user.additionalGids = undefined;
  try {
    const parts = userstr.split(':');
    if (parts.length === 1) {
      const uid = numericId(parts[0]!);
      const dir = requireAbsoluteRoot(s, root);
      if (uid === undefined) {
        const u = (await readPasswd(dir)).find((e) => e.name === userstr);
        if (!u) throw new Error('no users found');
        p.user.uid = u.uid;
        p.user.gid = u.gid;
        return;
      }
      let entries: PasswdEntry[] = [];
      try {
        entries = await readPasswd(dir);
      } catch (err) {
        if (!missing(err)) throw err;
      }
      const u = entries.find((e) => e.uid === uid);
      p.user.uid = uid;
      p.user.gid = u ? u.gid : 0;
      return;
    }
    if (parts.length !== 2) throw new Error(`invalid USER value ${userstr}`);
    let uid = numericId(parts[0]!);
    let gid = numericId(parts[1]!);
    const username = uid === undefined ? parts[0]! : '';
    const groupname = gid === undefined ? parts[1]! : '';
    if (!username && !groupname) {
      p.user.uid = uid!;
      p.user.gid = gid!;
      return;
    }
    const dir = requireAbsoluteRoot(s, root);
    if (username) {
      const u = (await readPasswd(dir)).find((e) => e.name === username);
      if (!u) throw new Error('no users found');
      uid = u.uid;
    }
    if (groupname) {
      const g = (await readGroups(dir)).find((e) => e.name === groupname);
      if (!g) throw new Error('no groups found');
      gid = g.gid;
    }
    p.user.uid = uid ?? 0;
    p.user.gid = gid ?? 0;
  } finally {
    ensureAdditionalGids(p);
  }
}

/** oci.WithAdditionalGIDs: the groups in the container's /etc/group that list the user. */
export async function withAdditionalGIDs(s: Spec, userstr: string, root?: string): Promise<void> {
  const p = processOf(s);
  p.user.additionalGids = undefined;
  const dir = requireAbsoluteRoot(s, root);
  try {
    let username = userstr;
    const uid = /^-?\d+$/.test(userstr) ? Number(userstr) : undefined;
    if (uid !== undefined) {
      let entries: PasswdEntry[];
      try {
        entries = await readPasswd(dir);
      } catch (err) {
        if (missing(err)) return;
        throw err;
      }
      const u = entries.find((e) => e.uid === uid);
      if (!u) return;
      username = u.name;
    }
    let groups: GroupEntry[];
    try {
      groups = await readGroups(dir);
    } catch (err) {
      if (missing(err)) return;
      throw err;
    }
    p.user.additionalGids = groups.filter((g) => g.name !== username && g.members.includes(username)).map((g) => g.gid);
  } finally {
    ensureAdditionalGids(p);
  }
}

/**
 * oci.WithImageConfigArgs for Linux: image env under the spec's env, entrypoint + cmd (or
 * `args`), working dir, and the image user with its supplementary groups. `root` is where the
 * rootfs is mounted for reading /etc/passwd and /etc/group.
 */
export async function withImageConfig(s: Spec, config: ImageConfig, root: string, args?: readonly string[]): Promise<void> {
  const p = processOf(s);
  const defaults = config.Env && config.Env.length ? config.Env : [DEFAULT_PATH_ENV];
  p.env = replaceOrAppendEnv(defaults, p.env ?? []);
  const cmd = args && args.length ? [...args] : [...(config.Cmd ?? [])];
  p.args = [...(config.Entrypoint ?? []), ...cmd];
  p.cwd = config.WorkingDir || '/';
  if (config.User) {
    await withUser(s, config.User, root);
    await withAdditionalGIDs(s, String(p.user.uid), root);
    return;
  }
  await withAdditionalGIDs(s, 'root', root);
}

/** The spec with its objects' keys in Go field order, ready to marshal. */
export function finalizeSpec(s: Spec): Spec {
  const out: Record<string, unknown> = {};
  const order = ['ociVersion', 'process', 'root', 'hostname', 'mounts', 'hooks', 'annotations', 'linux'];
  for (const k of order) if (s[k] !== undefined) out[k] = k === 'process' ? orderProcess(s.process!) : s[k];
  for (const [k, v] of Object.entries(s)) if (!(k in out) && v !== undefined) out[k] = v;
  const linux = out.linux as SpecLinux | undefined;
  if (linux) {
    const lo: Record<string, unknown> = {};
    const lorder = ['uidMappings', 'gidMappings', 'sysctl', 'resources', 'cgroupsPath', 'namespaces', 'devices', 'seccomp', 'rootfsPropagation', 'maskedPaths', 'readonlyPaths', 'mountLabel', 'intelRdt', 'personality'];
    for (const k of lorder) if (linux[k] !== undefined) lo[k] = linux[k];
    for (const [k, v] of Object.entries(linux)) if (!(k in lo) && v !== undefined) lo[k] = v;
    if (linux.resources) {
      const ro: Record<string, unknown> = {};
      for (const k of ['devices', 'memory', 'cpu', 'pids', 'blockIO', 'hugepageLimits', 'network', 'rdma', 'unified']) {
        if (linux.resources[k] !== undefined) ro[k] = linux.resources[k];
      }
      lo.resources = ro;
    }
    out.linux = lo;
  }
  return out as Spec;
}
