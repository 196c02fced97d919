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
 */
import { createRequire } from 'node:module';
import { LIBC_CANDIDATES } from './syscalls.js';

type Koffi = typeof import('koffi');

interface Malloc {
  mallopt: (param: number, value: number) => number;
  trim: (pad: number) => number;
}

/** mallopt(3) parameter M_ARENA_MAX. */
const M_ARENA_MAX = -8;

let lib: Malloc | null | undefined;

function load(): Malloc | null {
  if (lib !== undefined) return lib;
  lib = null;
  if (process.platform !== 'linux') return lib;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as Koffi;
    for (const name of LIBC_CANDIDATES) {
      try {
        const libc = koffi.load(name);
        lib = {
          mallopt: libc.func('int mallopt(int param, int value)') as Malloc['mallopt'],
          trim: libc.func('int malloc_trim(size_t pad)') as Malloc['trim'],
        };
        break;
      } catch {
        // not this libc, or no such symbol (musl has no malloc_trim)
      }
    }
  } catch {
    // koffi unavailable: run untuned
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
