/**
 * A container's cgroup, found from /proc/<init pid>/cgroup the way the runc shim loads it, and
 * its statistics for Task.Stats as containerd's cgroups library reports them: an Any of
 * `io.containerd.cgroups.v1.Metrics` on a v1 (or hybrid) host, `io.containerd.cgroups.v2.Metrics`
 * when /sys/fs/cgroup itself is the unified hierarchy. Missing files are skipped, as with
 * cgroups.IgnoreNotExist.
 */
import { readFileSync, statfsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import * as v1 from '../../api/gen/cgroups/v1/metrics.js';
import * as v2 from '../../api/gen/cgroups/v2/metrics.js';
import type { Any } from '../../api/gen/google/protobuf/any.js';

const CGROUP_ROOT = '/sys/fs/cgroup';
const CGROUP2_SUPER_MAGIC = 0x63677270;
/** USER_HZ, the unit of cpuacct.stat. */
const CLOCK_TICKS = 100n;
/** The largest uint64: what containerd reports for an unlimited ("max") v2 limit. */
const U64_MAX = (1n << 64n) - 1n;

export type CgroupMode = 'unified' | 'legacy';

let detectedMode: CgroupMode | undefined;

/** 'unified' only when /sys/fs/cgroup is cgroup2; hybrid hosts count as v1, as containerd does. */
export function cgroupMode(): CgroupMode {
  if (detectedMode) return detectedMode;
  try {
    detectedMode = statfsSync(CGROUP_ROOT).type === CGROUP2_SUPER_MAGIC ? 'unified' : 'legacy';
  } catch {
    detectedMode = 'legacy';
  }
  return detectedMode;
}

/** One line of /proc/<pid>/cgroup. */
export interface CgroupEntry {
  hierarchy: number;
  controllers: string[];
  path: string;
}

export function parseProcCgroup(text: string): CgroupEntry[] {
  const entries: CgroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    entries.push({
      hierarchy: Number(line.slice(0, first)),
      controllers: line.slice(first + 1, second).split(',').filter(Boolean),
      path: line.slice(second + 1),
    });
  }
  return entries;
}

interface V1Mount {
  mountpoint: string;
  root: string;
  controllers: string[];
}

/** cgroup (v1) mounts from mountinfo: mount point, mount root and the controllers they carry. */
export function parseCgroupV1Mounts(mountinfo: string): V1Mount[] {
  const mounts: V1Mount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fields = line.slice(0, sep).split(' ');
    const tail = line.slice(sep + 3).split(' ');
    if (tail[0] !== 'cgroup') continue;
    const controllers = (tail[2] ?? '').split(',').filter((o) => o !== 'rw' && o !== 'ro');
    mounts.push({ root: unescape(fields[3] ?? '/'), mountpoint: unescape(fields[4] ?? ''), controllers });
  }
  return mounts;
}

function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** A handle on one container's cgroup(s). */
export interface Cgroup {
  readonly mode: CgroupMode;
  stats(): Promise<Any>;
  /** The OOM-kill counter (memory.oom_control / memory.events), or undefined when unknown. */
  oomKills(): number | undefined;
}

/** Loads the cgroup of `pid`, or undefined when it cannot be determined. */
export function loadCgroup(pid: number): Cgroup | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return undefined;
  }
  const entries = parseProcCgroup(text);
  if (cgroupMode() === 'unified') {
    const unified = entries.find((e) => e.hierarchy === 0 && e.controllers.length === 0);
    return unified ? new CgroupV2(join(CGROUP_ROOT, unified.path)) : undefined;
  }
  const mounts = parseCgroupV1Mounts(readFileSync('/proc/self/mountinfo', 'utf8'));
  const paths = new Map<string, string>();
  for (const entry of entries) {
    if (entry.hierarchy === 0) continue;
    const mount = mounts.find((m) => entry.controllers.every((c) => m.controllers.includes(c)) && entry.controllers.length > 0);
    if (!mount) continue;
    const relative = mount.root === '/' ? entry.path : posix.relative(mount.root, entry.path);
    const dir = join(mount.mountpoint, relative.startsWith('..') ? entry.path : relative);
    for (const controller of entry.controllers) paths.set(controller, dir);
  }
  return paths.size > 0 ? new CgroupV1(paths) : undefined;
}

// ---- file readers ---------------------------------------------------------------------------

/** An event count as a number (OOM kills are compared, never anywhere near 2^53). */
function asCount(value: bigint | undefined): number | undefined {
  return value === undefined ? undefined : Number(value);
}

/** A cgroup counter as a uint64; anything unreadable, negative or "max" is 0, as in containerd. */
export function parseUint(text: string): bigint {
  const value = text.trim();
  if (!value || value === 'max') return 0n;
  let big: bigint;
  try {
    big = BigInt(value);
  } catch {
    return 0n;
  }
  if (big < 0n) return 0n;
  return big > U64_MAX ? U64_MAX : big;
}

/** "key value" lines (memory.stat, cpu.stat, cpuacct.stat, memory.events, oom_control). */
export function parseKeyValues(text: string): Map<string, bigint> {
  const values = new Map<string, bigint>();
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined) values.set(key, parseUint(value));
  }
  return values;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

async function readUint(path: string): Promise<bigint | undefined> {
  const text = await readText(path);
  return text === undefined ? undefined : parseUint(text);
}

/** A v2 limit file: "max" means unlimited, reported as the largest uint64 (as containerd does). */
async function readLimit(path: string): Promise<bigint | undefined> {
  const text = await readText(path);
  if (text === undefined) return undefined;
  return text.trim() === 'max' ? U64_MAX : parseUint(text);
}

async function readKeyValues(path: string): Promise<Map<string, bigint> | undefined> {
  const text = await readText(path);
  return text === undefined ? undefined : parseKeyValues(text);
}

const deviceNames = new Map<string, string>();

/** "/dev/sda" for 8:0, from sysfs (as containerd's cgroups library names blkio entries). */
function deviceName(major: number, minor: number): string {
  const key = `${major}:${minor}`;
  let name = deviceNames.get(key);
  if (name === undefined) {
    name = '';
    try {
      const uevent = readFileSync(`/sys/dev/block/${key}/uevent`, 'utf8');
      const devname = /^DEVNAME=(.*)$/m.exec(uevent)?.[1];
      if (devname) name = `/dev/${devname}`;
    } catch { /* not a block device we can see */ }
    deviceNames.set(key, name);
  }
  return name;
}

// ---- cgroup v1 -----------------------------------------------------------------------------

const V1_MEMORY_STAT_KEYS: Array<[string, keyof v1.MemoryStat]> = [
  ['cache', 'cache'], ['rss', 'rss'], ['rss_huge', 'rssHuge'], ['mapped_file', 'mappedFile'],
  ['dirty', 'dirty'], ['writeback', 'writeback'], ['pgpgin', 'pgPgIn'], ['pgpgout', 'pgPgOut'],
  ['pgfault', 'pgFault'], ['pgmajfault', 'pgMajFault'], ['inactive_anon', 'inactiveAnon'],
  ['active_anon', 'activeAnon'], ['inactive_file', 'inactiveFile'], ['active_file', 'activeFile'],
  ['unevictable', 'unevictable'], ['hierarchical_memory_limit', 'hierarchicalMemoryLimit'],
  ['hierarchical_memsw_limit', 'hierarchicalSwapLimit'], ['total_cache', 'totalCache'],
  ['total_rss', 'totalRss'], ['total_rss_huge', 'totalRssHuge'], ['total_mapped_file', 'totalMappedFile'],
  ['total_dirty', 'totalDirty'], ['total_writeback', 'totalWriteback'], ['total_pgpgin', 'totalPgPgIn'],
  ['total_pgpgout', 'totalPgPgOut'], ['total_pgfault', 'totalPgFault'], ['total_pgmajfault', 'totalPgMajFault'],
  ['total_inactive_anon', 'totalInactiveAnon'], ['total_active_anon', 'totalActiveAnon'],
  ['total_inactive_file', 'totalInactiveFile'], ['total_active_file', 'totalActiveFile'],
  ['total_unevictable', 'totalUnevictable'],
];

const V1_BLKIO_FILES: Array<[string, keyof v1.BlkIOStat]> = [
  ['io_service_bytes_recursive', 'ioServiceBytesRecursive'],
  ['io_serviced_recursive', 'ioServicedRecursive'],
  ['io_queued_recursive', 'ioQueuedRecursive'],
  ['io_service_time_recursive', 'ioServiceTimeRecursive'],
  ['io_wait_time_recursive', 'ioWaitTimeRecursive'],
  ['io_merged_recursive', 'ioMergedRecursive'],
  ['io_time_recursive', 'ioTimeRecursive'],
  ['sectors_recursive', 'sectorsRecursive'],
];

/** Parses a blkio file: "MAJ:MIN [Op] value" lines; the "Total" line is skipped. */
export function parseBlkio(text: string, resolveName: (major: number, minor: number) => string = deviceName): v1.BlkIOEntry[] {
  const entries: v1.BlkIOEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const dev = /^(\d+):(\d+)$/.exec(fields[0] ?? '');
    if (!dev) continue;
    const major = Number(dev[1]);
    const minor = Number(dev[2]);
    const op = fields.length >= 3 ? fields[1]! : '';
    const value = parseUint(fields[fields.length - 1] ?? '0');
    entries.push({ op, device: resolveName(major, minor), major: BigInt(major), minor: BigInt(minor), value });
  }
  return entries;
}

export class CgroupV1 implements Cgroup {
  readonly mode = 'legacy' as const;

  constructor(private readonly paths: Map<string, string>) {}

  private file(controller: string, name: string): string | undefined {
    const dir = this.paths.get(controller);
    return dir ? join(dir, name) : undefined;
  }

  private async uint(controller: string, name: string): Promise<bigint | undefined> {
    const path = this.file(controller, name);
    return path ? readUint(path) : undefined;
  }

  private async keyValues(controller: string, name: string): Promise<Map<string, bigint> | undefined> {
    const path = this.file(controller, name);
    return path ? readKeyValues(path) : undefined;
  }

  oomKills(): number | undefined {
    const path = this.file('memory', 'memory.oom_control');
    if (!path) return undefined;
    try {
      return asCount(parseKeyValues(readFileSync(path, 'utf8')).get('oom_kill'));
    } catch {
      return undefined;
    }
  }

  async metrics(): Promise<v1.Metrics> {
    const metrics = v1.Metrics.fromPartial({});
    const [pids, cpu, memory, oom, blkio] = await Promise.all([
      this.pids(), this.cpu(), this.memory(), this.oomControl(), this.blkio(),
    ]);
    metrics.pids = pids;
    metrics.cpu = cpu;
    metrics.memory = memory;
    metrics.memoryOomControl = oom;
    metrics.blkio = blkio;
    return metrics;
  }

  async stats(): Promise<Any> {
    return { typeUrl: 'io.containerd.cgroups.v1.Metrics', value: Buffer.from(v1.Metrics.encode(await this.metrics()).finish()) };
  }

  private async pids(): Promise<v1.PidsStat | undefined> {
    const current = await this.uint('pids', 'pids.current');
    if (current === undefined) return undefined;
    return { current, limit: (await this.uint('pids', 'pids.max')) ?? 0n };
  }

  private async cpu(): Promise<v1.CPUStat | undefined> {
    const total = await this.uint('cpuacct', 'cpuacct.usage');
    const throttling = await this.keyValues('cpu', 'cpu.stat');
    if (total === undefined && throttling === undefined) return undefined;
    const perCpuPath = this.file('cpuacct', 'cpuacct.usage_percpu');
    const perCpuText = perCpuPath ? await readText(perCpuPath) : undefined;
    const ticks = await this.keyValues('cpuacct', 'cpuacct.stat');
    const toNanos = (t: bigint | undefined) => ((t ?? 0n) * 1_000_000_000n) / CLOCK_TICKS;
    return {
      usage: {
        total: total ?? 0n,
        kernel: toNanos(ticks?.get('system')),
        user: toNanos(ticks?.get('user')),
        perCpu: (perCpuText ?? '').trim().split(/\s+/).filter(Boolean).map(parseUint),
      },
      throttling: {
        periods: throttling?.get('nr_periods') ?? 0n,
        throttledPeriods: throttling?.get('nr_throttled') ?? 0n,
        throttledTime: throttling?.get('throttled_time') ?? 0n,
      },
    };
  }

  private async memoryEntry(prefix: string): Promise<v1.MemoryEntry | undefined> {
    const [usage, max, failcnt, limit] = await Promise.all([
      this.uint('memory', `${prefix}.usage_in_bytes`),
      this.uint('memory', `${prefix}.max_usage_in_bytes`),
      this.uint('memory', `${prefix}.failcnt`),
      this.uint('memory', `${prefix}.limit_in_bytes`),
    ]);
    if (usage === undefined && limit === undefined) return undefined;
    return { usage: usage ?? 0n, max: max ?? 0n, failcnt: failcnt ?? 0n, limit: limit ?? 0n };
  }

  private async memory(): Promise<v1.MemoryStat | undefined> {
    const raw = await this.keyValues('memory', 'memory.stat');
    if (!raw) return undefined;
    const stat = v1.MemoryStat.fromPartial({});
    const record = stat as unknown as Record<string, bigint>;
    for (const [key, field] of V1_MEMORY_STAT_KEYS) record[field] = raw.get(key) ?? 0n;
    [stat.usage, stat.swap, stat.kernel, stat.kernelTcp] = await Promise.all([
      this.memoryEntry('memory'),
      this.memoryEntry('memory.memsw'),
      this.memoryEntry('memory.kmem'),
      this.memoryEntry('memory.kmem.tcp'),
    ]);
    return stat;
  }

  private async oomControl(): Promise<v1.MemoryOomControl | undefined> {
    const values = await this.keyValues('memory', 'memory.oom_control');
    if (!values) return undefined;
    return {
      oomKillDisable: values.get('oom_kill_disable') ?? 0n,
      underOom: values.get('under_oom') ?? 0n,
      oomKill: values.get('oom_kill') ?? 0n,
    };
  }

  private async blkio(): Promise<v1.BlkIOStat | undefined> {
    if (!this.paths.has('blkio')) return undefined;
    const stat = v1.BlkIOStat.fromPartial({});
    const record = stat as unknown as Record<string, v1.BlkIOEntry[]>;
    // Without CFQ the plain files are empty; the throttle files carry the bytes and ops then.
    const serviced = await readText(this.file('blkio', 'blkio.io_serviced_recursive')!);
    const prefix = serviced && serviced.trim() && !/^Total/.test(serviced.trim()) ? 'blkio.' : 'blkio.throttle.';
    await Promise.all(V1_BLKIO_FILES.map(async ([name, field]) => {
      const text = await readText(this.file('blkio', prefix + name)!);
      record[field] = text ? parseBlkio(text) : [];
    }));
    return stat;
  }
}

// ---- cgroup v2 -----------------------------------------------------------------------------

const V2_MEMORY_STAT_KEYS: Array<[string, keyof v2.MemoryStat]> = [
  ['anon', 'anon'], ['file', 'file'], ['kernel_stack', 'kernelStack'], ['slab', 'slab'], ['sock', 'sock'],
  ['shmem', 'shmem'], ['file_mapped', 'fileMapped'], ['file_dirty', 'fileDirty'],
  ['file_writeback', 'fileWriteback'], ['anon_thp', 'anonThp'], ['inactive_anon', 'inactiveAnon'],
  ['active_anon', 'activeAnon'], ['inactive_file', 'inactiveFile'], ['active_file', 'activeFile'],
  ['unevictable', 'unevictable'], ['slab_reclaimable', 'slabReclaimable'],
  ['slab_unreclaimable', 'slabUnreclaimable'], ['pgfault', 'pgfault'], ['pgmajfault', 'pgmajfault'],
  ['workingset_refault', 'workingsetRefault'], ['workingset_activate', 'workingsetActivate'],
  ['workingset_nodereclaim', 'workingsetNodereclaim'], ['pgrefill', 'pgrefill'], ['pgscan', 'pgscan'],
  ['pgsteal', 'pgsteal'], ['pgactivate', 'pgactivate'], ['pgdeactivate', 'pgdeactivate'],
  ['pglazyfree', 'pglazyfree'], ['pglazyfreed', 'pglazyfreed'], ['thp_fault_alloc', 'thpFaultAlloc'],
  ['thp_collapse_alloc', 'thpCollapseAlloc'],
];

/** io.stat: "MAJ:MIN rbytes=… wbytes=… rios=… wios=… …" per device. */
export function parseIoStat(text: string): v2.IOEntry[] {
  const entries: v2.IOEntry[] = [];
  for (const line of text.split('\n')) {
    const [dev, ...pairs] = line.trim().split(/\s+/);
    const m = /^(\d+):(\d+)$/.exec(dev ?? '');
    if (!m) continue;
    const entry: v2.IOEntry = { major: BigInt(m[1]!), minor: BigInt(m[2]!), rbytes: 0n, wbytes: 0n, rios: 0n, wios: 0n };
    for (const pair of pairs) {
      const [key, value] = pair.split('=');
      if (key === 'rbytes' || key === 'wbytes' || key === 'rios' || key === 'wios') entry[key] = parseUint(value ?? '0');
    }
    entries.push(entry);
  }
  return entries;
}

export class CgroupV2 implements Cgroup {
  readonly mode = 'unified' as const;

  constructor(private readonly dir: string) {}

  oomKills(): number | undefined {
    try {
      return asCount(parseKeyValues(readFileSync(join(this.dir, 'memory.events'), 'utf8')).get('oom_kill'));
    } catch {
      return undefined;
    }
  }

  async metrics(): Promise<v2.Metrics> {
    const at = (name: string) => join(this.dir, name);
    const [pidsCurrent, pidsMax, cpu, memStat, memCurrent, memMax, swapCurrent, swapMax, io, events] = await Promise.all([
      readUint(at('pids.current')), readLimit(at('pids.max')), readKeyValues(at('cpu.stat')),
      readKeyValues(at('memory.stat')), readUint(at('memory.current')), readLimit(at('memory.max')),
      readUint(at('memory.swap.current')), readLimit(at('memory.swap.max')), readText(at('io.stat')),
      readKeyValues(at('memory.events')),
    ]);
    const metrics = v2.Metrics.fromPartial({});
    if (pidsCurrent !== undefined) metrics.pids = { current: pidsCurrent, limit: pidsMax ?? 0n };
    if (cpu) {
      metrics.cpu = {
        usageUsec: cpu.get('usage_usec') ?? 0n,
        userUsec: cpu.get('user_usec') ?? 0n,
        systemUsec: cpu.get('system_usec') ?? 0n,
        nrPeriods: cpu.get('nr_periods') ?? 0n,
        nrThrottled: cpu.get('nr_throttled') ?? 0n,
        throttledUsec: cpu.get('throttled_usec') ?? 0n,
      };
    }
    if (memStat) {
      const memory = v2.MemoryStat.fromPartial({});
      const record = memory as unknown as Record<string, bigint>;
      for (const [key, field] of V2_MEMORY_STAT_KEYS) record[field] = memStat.get(key) ?? 0n;
      memory.usage = memCurrent ?? 0n;
      memory.usageLimit = memMax ?? 0n;
      memory.swapUsage = swapCurrent ?? 0n;
      memory.swapLimit = swapMax ?? 0n;
      metrics.memory = memory;
    }
    if (io !== undefined) metrics.io = { usage: parseIoStat(io) };
    if (events) {
      metrics.memoryEvents = {
        low: events.get('low') ?? 0n,
        high: events.get('high') ?? 0n,
        max: events.get('max') ?? 0n,
        oom: events.get('oom') ?? 0n,
        oomKill: events.get('oom_kill') ?? 0n,
      };
    }
    return metrics;
  }

  async stats(): Promise<Any> {
    return { typeUrl: 'io.containerd.cgroups.v2.Metrics', value: Buffer.from(v2.Metrics.encode(await this.metrics()).finish()) };
  }
}
