/**
 * glibc malloc tuning for the daemon, through koffi like the other libc calls (syscalls.ts).
 *
 * Node's native side (Buffers, zlib, file-system requests, SQLite, OpenSSL) allocates with
 * malloc. Two glibc behaviours make a long-running daemon's resident memory ratchet up after a
 * burst of work (a pull, a large ingest) even though the memory is free again afterwards:
 * - every thread that allocates may get its own arena, up to 8 per core, and each arena keeps
 *   what was freed in it; berthd runs 16 libuv pool threads next to V8's workers;
 * - free memory in the middle of an arena is only handed back by malloc_trim(3).
 * So berthd caps the arenas (before the pool threads start) and trims once a burst is over
 * (core/server/memory.ts). On other C libraries (musl) these are no-ops.
 *
 * The same idle moment also unmaps the clean pages of the program's files (see
 * releaseCleanFilePages): the node binary alone keeps ~40 MiB mapped after start-up, most of
 * it code and data touched once (bootstrap, module loading) and never again.
 */
import { openLibc } from './syscalls.js';

interface Malloc {
  mallopt: (param: number, value: number) => number;
  trim: (pad: number) => number;
  madvise: (addr: bigint, length: bigint, advice: number) => number;
}

/** mallopt(3) parameter M_ARENA_MAX. */
const M_ARENA_MAX = -8;

let lib: Malloc | null | undefined;

function load(): Malloc | null {
  if (lib !== undefined) return lib;
  lib = null;
  try {
    const { lib: libc } = openLibc();
    lib = {
      mallopt: libc.func('int mallopt(int param, int value)') as Malloc['mallopt'],
      trim: libc.func('int malloc_trim(size_t pad)') as Malloc['trim'],
      madvise: libc.func('int madvise(uintptr_t addr, size_t length, int advice)') as Malloc['madvise'],
    };
  } catch {
    // Not Linux, koffi or libc unavailable, or no such symbol (musl has no malloc_trim): run untuned
  }
  return lib;
}

/**
 * Caps the number of malloc arenas. Only arenas created afterwards are affected, so call it
 * before the first asynchronous file-system call starts libuv's pool threads.
 */
export function limitMallocArenas(max: number): boolean {
  const m = load();
  return m !== null && m.mallopt(M_ARENA_MAX, max) === 1;
}

/** Returns free memory of every arena to the kernel; true if any was released. */
export function trimMalloc(): boolean {
  const m = load();
  return m !== null && m.trim(0) === 1;
}

/** madvise(2) advice that drops a range's page-table entries (file pages stay cached). */
const MADV_DONTNEED = 4;

export interface Mapping {
  start: bigint;
  length: bigint;
}

/**
 * The mappings of a /proc/<pid>/smaps text whose resident pages can be dropped and faulted back
 * unchanged: backed by a regular file, not writable, and holding no anonymous (copy-on-write)
 * pages. The last condition matters: a read-only region made private by relocation (RELRO) has
 * anonymous pages, and dropping those would bring back the file's unrelocated bytes.
 */
export function cleanFileMappings(smaps: string): Mapping[] {
  const out: Mapping[] = [];
  let current: { mapping: Mapping; eligible: boolean; rss: number; anonymous: number } | undefined;
  const flush = () => {
    if (current?.eligible && current.rss > 0 && current.anonymous === 0) out.push(current.mapping);
  };
  for (const line of smaps.split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (header) {
      flush();
      const [, from, to, perms, path] = header as unknown as [string, string, string, string, string];
      const start = BigInt(`0x${from}`);
      current = {
        mapping: { start, length: BigInt(`0x${to}`) - start },
        eligible: path.startsWith('/') && !path.startsWith('/dev/') && perms[1] !== 'w',
        rss: 0,
        // Unknown until the mapping's Anonymous line says otherwise.
        anonymous: -1,
      };
      continue;
    }
    if (!current) continue;
    const field = /^(Rss|Anonymous):\s+(\d+) kB/.exec(line);
    if (field?.[1] === 'Rss') current.rss = Number(field[2]);
    else if (field?.[1] === 'Anonymous') current.anonymous = Number(field[2]);
  }
  flush();
  return out;
}

/**
 * Unmaps the resident clean file pages of this process (they stay in the page cache; the next
 * use is a minor fault). Returns the number of mappings released; 0 where unsupported.
 */
export function releaseCleanFilePages(readSmaps: () => string): number {
  const m = load();
  if (m === null) return 0;
  let released = 0;
  for (const { start, length } of cleanFileMappings(readSmaps())) {
    if (m.madvise(start, length, MADV_DONTNEED) === 0) released++;
  }
  return released;
}
