/**
 * Applies an OCI layer (a plain tar stream; see compression.ts for decompression) onto a
 * directory, with the semantics of containerd's archive.Apply.
 *
 * Two targets are supported:
 *  - 'direct': the directory already holds the merged content of the lower layers (native and
 *    btrfs snapshotters). Whiteouts delete; an opaque marker deletes everything in its directory
 *    that this layer did not itself create.
 *  - 'overlay': the directory is an empty overlayfs upperdir. Whiteouts become 0/0 character
 *    devices and opaque markers become trusted.overlay.opaque=y, which overlayfs interprets.
 * Whiteout entries never appear in the result. `.wh.` naming nothing ('', '.', '..') is an
 * InvalidArgumentError; other `.wh..wh.*` names (AUFS bookkeeping such as .wh..wh.plnk) and
 * everything below them are skipped.
 *
 * Containment (nothing is ever created or modified outside `root`):
 *  - Entry names are cleaned as if rooted at "/": a leading "/" is dropped and ".." cannot climb
 *    above the root ("../../etc/x" lands on <root>/etc/x), as containerd does.
 *  - Every directory on the way to an entry is resolved inside the root: symlinks are followed
 *    with the root standing in for "/" (absolute targets restart at the root, ".." stops at
 *    it), like containerd's fs.RootPath. The final component is never followed: an existing
 *    path is removed before anything else is created there.
 *  - Hardlink targets: a linkname whose ".." components would leave the root is rejected with
 *    InvalidArgumentError; an absolute linkname is an archive member name relative to the root.
 *    The target's parent is resolved inside the root like any entry, and link(2) does not
 *    follow a final symlink, so a hardlink can only ever point at an inode inside the root.
 *  - Device nodes are only created when allowDevices (default: running as root); otherwise
 *    they are skipped, as containerd does inside a user namespace. Fifos are always created.
 *  - xattrs in the trusted.* namespace are never taken from an archive (they would let a layer
 *    forge overlayfs metadata); containerd refuses them too.
 *
 * Throughput: entries are handled in archive order, and whatever later entries may depend on
 * (mkdir, symlink, link, mknod, unlink, and opening large files) is done before moving on.
 * Small files (<= 1 MiB; their bytes are already in memory), directories and symlinks are
 * made inline with synchronous system calls: a layer is mostly thousands of small files, and
 * on the thread pool each of their five or six calls costs a queue round trip, a thread
 * wake-up and directory-lock contention between the workers - several times the CPU of the
 * calls themselves. Inline work yields to the event loop every few milliseconds, and if one
 * file takes long (a throttled or remote disk) the rest of the layer goes to the thread pool
 * so the daemon stays responsive. Files that root creates as root:root in a directory that
 * hands out gid 0 skip the chown, and are created with their final mode when the umask
 * allows, skipping the chmod.
 * The rest runs in the background, bounded by open-descriptor and in-flight-byte limits:
 * metadata of nodes, the data and metadata of large files (written as it streams, on their
 * own descriptor), and - once inline work is off - small files, directories and symlinks.
 * Whatever touches a path again (an existence check, a removal, a hardlink to it, another
 * entry for it) first waits for the background work on that path; removing a directory or
 * clearing an opaque one waits for all of it. Directory times are set last, once everything
 * inside them has been written.
 */
import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { posix as path } from 'node:path';
import type { ReadEntry } from 'tar';
import { InvalidArgumentError, NotFoundError } from '../../../../core/errdefs/errdefs.js';
import { closeFd, fchmodFd, fchownFd, futimesFd, openFd, writeAllAt } from '../../../../core/sys/fd.js';
import * as fsx from '../../../../core/sys/fsx.js';
import { createLayerParser, entryXattrs } from './tarstream.js';

export type ApplyMode = 'overlay' | 'direct';

export interface ApplyOptions {
  mode: ApplyMode;
  /** Create char/block device nodes (default: true when running as root). */
  allowDevices?: boolean;
  /**
   * Lower layer roots, nearest first. Directories this layer needs but does not list are
   * created with the owner, mode, times and xattrs of the same directory in the first parent
   * root that has it (otherwise root:root 0755), so an overlay upperdir does not mask them.
   */
  parentRoots?: string[];
  signal?: AbortSignal;
  /** Called for entries that are skipped (devices without allowDevices, unsupported xattrs...). */
  onWarning?: (message: string) => void;
  /**
   * Make small files, directories and symlinks with synchronous calls on the calling thread
   * (default true); false keeps every file-system call on the thread pool.
   */
  inline?: boolean;
}

export interface ApplyResult {
  /** Number of archive entries read (whiteouts and skipped entries included). */
  entries: number;
  /** Sum of the entries' content sizes. */
  bytes: number;
}

const WHITEOUT_PREFIX = '.wh.';
const WHITEOUT_META_PREFIX = '.wh..wh.';
const WHITEOUT_OPAQUE = '.wh..wh..opq';
const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';

/** Background limits: descriptors held open, and file data handed to the kernel but not written yet. */
const MAX_OPEN_FILES = 128;
const HIGH_WATER_BYTES = 32 * 1024 * 1024;
const LOW_WATER_BYTES = 8 * 1024 * 1024;
/** Parsed entries the worker may fall behind the parser before input is throttled. */
const MAX_QUEUED_ENTRIES = 1024;
const MAX_SYMLINKS = 255;
/** Files up to this size are buffered and created wholly in the background. */
const SMALL_FILE_BYTES = 1024 * 1024;
const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
/** Inline work runs this long before the event loop gets a turn. */
const INLINE_SLICE_MS = 8;
/** One inline file taking longer than this moves the rest of the layer to the thread pool. */
const INLINE_SLOW_MS = 50;
const S_ISGID = 0o2000;

/** The process umask, read without changing it (undefined when /proc is not readable). */
let umaskCache: number | null | undefined;
function processUmask(): number | undefined {
  if (umaskCache === undefined) {
    umaskCache = null;
    try {
      const m = /^Umask:\s*([0-7]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
      if (m) umaskCache = Number.parseInt(m[1]!, 8);
    } catch {
      // Unknown: every file gets an explicit chmod.
    }
  }
  return umaskCache ?? undefined;
}

/**
 * Applies the tar stream onto `root`, streaming (the layer is never held in memory) and
 * resolving when everything, including directory times, is on disk.
 */
export async function applyLayer(tarStream: Readable, root: string, opts: ApplyOptions): Promise<ApplyResult> {
  if (opts.mode !== 'overlay' && opts.mode !== 'direct') {
    throw new InvalidArgumentError(`unknown apply mode ${JSON.stringify(opts.mode)}`);
  }
  // Listen for source errors from the start: the stream may fail while the root is checked.
  let sourceError: unknown;
  const onSourceError = (err: unknown) => {
    sourceError ??= err;
  };
  tarStream.on('error', onSourceError);
  let realRoot: string;
  try {
    realRoot = await fsp.realpath(root);
    if (!(await fsp.stat(realRoot)).isDirectory()) throw new InvalidArgumentError(`apply target ${root} is not a directory`);
  } catch (err) {
    tarStream.destroy();
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`apply target ${root}`, { cause: err });
    throw err;
  }
  const applier = new Applier(realRoot, opts);
  if (sourceError !== undefined) applier.fail(sourceError);
  tarStream.off('error', onSourceError);
  return applier.run(tarStream);
}

type Kind = 'dir' | 'symlink' | 'other';

interface DirTimes {
  abs: string;
  atime: Date;
  mtime: Date;
}

/** Which kind of tar entry a node-tar type name is, for the ones a layer may contain. */
/**
 * The chunks of a byte stream one by one, as they were pushed. (A for-await over a byte
 * stream reads everything buffered at once, which joins the buffered chunks into a new copy:
 * for a big layer, every uncompressed byte copied once more on the applying thread.)
 */
async function* pushedChunks(input: Readable): AsyncGenerator<Buffer> {
  const pending: Buffer[] = [];
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const signal = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onData = (chunk: Buffer) => {
    pending.push(chunk);
    if (pending.length >= 4) input.pause();
    signal();
  };
  const onEnd = () => {
    ended = true;
    signal();
  };
  const onError = (err: unknown) => {
    failure ??= err;
    signal();
  };
  const onClose = () => {
    if (!ended) failure ??= Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
    signal();
  };
  input.on('data', onData);
  input.on('end', onEnd);
  input.on('error', onError);
  input.on('close', onClose);
  // A stream that failed or closed before this generator started emits nothing more: waiting
  // for its events would hang the Apply (a truncated gzip layer fails while the root is checked).
  if (input.errored) failure ??= input.errored;
  else if (input.readableEnded) ended = true;
  else if (input.destroyed) failure ??= Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  try {
    for (;;) {
      const chunk = pending.shift();
      if (chunk) {
        if (pending.length < 2 && input.isPaused()) input.resume();
        yield chunk;
        continue;
      }
      if (failure !== undefined) throw failure;
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    input.off('data', onData);
    input.off('end', onEnd);
    input.off('error', onError);
    input.off('close', onClose);
  }
}

function entryKind(type: string): 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo' | undefined {
  switch (type) {
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
      return 'file';
    case 'Directory':
    case 'GNUDumpDir':
      return 'dir';
    case 'SymbolicLink':
      return 'symlink';
    case 'Link':
      return 'link';
    case 'CharacterDevice':
      return 'char';
    case 'BlockDevice':
      return 'block';
    case 'FIFO':
      return 'fifo';
    default:
      return undefined;
  }
}

/**
 * An archive name as a path relative to the root: cleaned as if rooted at "/", so it never
 * starts with "/" or "..". '' means the root itself.
 */
export function cleanEntryName(name: string): string {
  return path.normalize('/' + name).slice(1).replace(/\/+$/, '');
}

/**
 * File-system errors that mean the layer contradicts itself or the tree it lands on (a hardlink
 * to a directory, a path through a non-directory, a name too long, a symlink loop): the layer is
 * bad input, so INVALID_ARGUMENT, with the system's message. Other errors keep their meaning
 * (ENOSPC stays RESOURCE_EXHAUSTED, ENOENT NOT_FOUND, I/O errors unknown).
 */
const BAD_LAYER_ERRNOS = new Set(['ENOTDIR', 'EISDIR', 'EPERM', 'ELOOP', 'ENAMETOOLONG', 'EINVAL', 'ENOTEMPTY', 'EMLINK', 'EXDEV']);
function classifyApplyError(err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !BAD_LAYER_ERRNOS.has(code)) return err;
  return new InvalidArgumentError(`layer cannot be applied: ${(err as Error).message}`, { cause: err });
}

/** The time containerd would set: out-of-range or missing times become the epoch. */
function boundTime(t: Date | undefined): Date {
  const ms = t?.getTime();
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) return new Date(0);
  return t!;
}

class Applier {
  readonly root: string;
  readonly mode: ApplyMode;
  readonly allowDevices: boolean;
  readonly parentRoots: string[];
  readonly signal?: AbortSignal;
  readonly warn: (message: string) => void;
  readonly isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  /** New files are root:root unless their directory is setgid (root with gid 0 only). */
  readonly rootGroup = this.isRoot && typeof process.getgid === 'function' && process.getgid() === 0;
  /** Small files, directories and symlinks are made inline (see the header). */
  inline: boolean;
  /** Inline work since the event loop last had a turn (ms). */
  inlineMs = 0;
  /**
   * Directories (real relative paths) in which a new file gets gid 0: not setgid, or setgid
   * with gid 0. Only directories whose metadata this apply set (or the root, checked first).
   */
  readonly zeroGidDirs = new Set<string>();

  /** Real relative paths ('' = root) known to be directories (not symlinks). */
  readonly knownDirs = new Set<string>(['']);
  /** Directories created empty during this apply: everything in them is in `made`. */
  readonly freshDirs = new Set<string>();
  /** Everything this apply created (entries, implicit parents, whiteout devices). */
  readonly made = new Set<string>();
  /** Entries this layer unpacked (containerd's "unpacked paths"), and all their ancestors. */
  readonly created = new Set<string>();
  readonly createdAncestors = new Set<string>();
  /** Archive parent path (cleaned) -> real relative directory, valid until something is removed. */
  readonly parentCache = new Map<string, string>();
  readonly dirTimes: DirTimes[] = [];

  /** Background work per absolute path, and all of it. */
  readonly pendingByPath = new Map<string, Promise<void>>();
  readonly pending = new Set<Promise<void>>();
  openFiles = 0;
  inflightBytes = 0;
  pausedEntry: ReadEntry | undefined;

  failure: unknown;
  readonly failWaiters = new Set<() => void>();
  onFail: (() => void) | undefined;

  entries = 0;
  bytes = 0;

  constructor(root: string, opts: ApplyOptions) {
    this.root = root;
    this.mode = opts.mode;
    this.allowDevices = opts.allowDevices ?? this.isRoot;
    this.parentRoots = opts.parentRoots ?? [];
    this.signal = opts.signal;
    this.warn = opts.onWarning ?? (() => {});
    this.inline = opts.inline ?? true;
  }

  abs(rel: string): string {
    return rel === '' ? this.root : `${this.root}/${rel}`;
  }

  fail(err: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = classifyApplyError(err ?? new Error('layer apply failed'));
    for (const w of this.failWaiters) w();
    this.failWaiters.clear();
    this.onFail?.();
    if (this.pausedEntry) {
      const e = this.pausedEntry;
      this.pausedEntry = undefined;
      e.resume();
    }
  }

  /** Resolves when `register` fires or the apply fails, whichever comes first. */
  waitFor(register: (done: () => void) => () => void): Promise<void> {
    if (this.failure !== undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let unregister = () => {};
      const done = () => {
        this.failWaiters.delete(done);
        unregister();
        resolve();
      };
      this.failWaiters.add(done);
      unregister = register(done);
    });
  }

  async run(input: Readable): Promise<ApplyResult> {
    const parser = createLayerParser();
    const queue: ReadEntry[] = [];
    let parsed = false;
    let wakeWorker: (() => void) | undefined;
    let wakePump: (() => void) | undefined;
    const wake = () => {
      const w = wakeWorker;
      wakeWorker = undefined;
      w?.();
    };

    parser.on('entry', (e: ReadEntry) => {
      queue.push(e);
      wake();
    });
    parser.on('ignoredEntry', (e: ReadEntry) => {
      if (e.meta) this.fail(new InvalidArgumentError(`tar header for entry after ${JSON.stringify(e.path)} is too large`));
      else this.fail(new InvalidArgumentError(`unsupported tar entry type ${e.header.typeKey || e.type} for ${JSON.stringify(e.path)}`));
      wake();
    });
    parser.on('warn', (code: string, message: string | Error) => {
      const msg = message instanceof Error ? message.message : String(message);
      // Zero bytes or only end-of-archive blocks: an empty layer, which is valid.
      if (code === 'TAR_BAD_ARCHIVE' && msg === 'Unrecognized archive format') return;
      this.fail(new InvalidArgumentError(`invalid tar archive: ${msg}`));
      wake();
    });
    parser.on('error', (err: Error) => {
      this.fail(err);
      wake();
    });
    parser.on('end', () => {
      parsed = true;
      wake();
    });

    const onAbort = () => {
      const reason = this.signal?.reason;
      this.fail(reason instanceof Error ? reason : Object.assign(new Error('layer apply aborted'), { name: 'AbortError' }));
      wake();
    };
    if (this.signal?.aborted) onAbort();
    this.signal?.addEventListener('abort', onAbort, { once: true });

    const worker = (async () => {
      try {
        await this.prepareRoot();
        for (;;) {
          if (this.failure !== undefined) return;
          const e = queue.shift();
          if (!e) {
            if (parsed) return;
            await this.waitFor((done) => {
              wakeWorker = done;
              return () => {
                if (wakeWorker === done) wakeWorker = undefined;
              };
            });
            continue;
          }
          if (queue.length < MAX_QUEUED_ENTRIES / 2 && wakePump) {
            const w = wakePump;
            wakePump = undefined;
            w();
          }
          await this.handle(e);
        }
      } catch (err) {
        this.fail(err);
      }
    })();

    this.onFail = () => {
      if (!input.destroyed) input.destroy();
    };
    const pump = (async () => {
      input.on('error', (err) => this.fail(err));
      try {
        for await (const chunk of pushedChunks(input)) {
          if (this.failure !== undefined) break;
          const ok = parser.write(chunk);
          if (!ok && this.failure === undefined) {
            await this.waitFor((done) => {
              parser.once('drain', done);
              return () => parser.off('drain', done);
            });
          }
          while (queue.length >= MAX_QUEUED_ENTRIES && this.failure === undefined) {
            await this.waitFor((done) => {
              wakePump = done;
              return () => {
                if (wakePump === done) wakePump = undefined;
              };
            });
          }
        }
      } catch (err) {
        this.fail(err);
      }
      if (this.failure === undefined) parser.end();
      else {
        input.destroy();
        parsed = true;
        wake();
      }
    })();

    await pump;
    await worker;
    // Background work must finish (and release its descriptors) even when failing.
    await this.drainAll(true);
    this.signal?.removeEventListener('abort', onAbort);
    if (this.failure === undefined && (parser as { badPax?: string }).badPax) {
      this.fail(new InvalidArgumentError(`invalid tar archive: ${(parser as { badPax?: string }).badPax}`));
    }
    if (this.failure !== undefined) throw this.failure;

    try {
      await this.applyDirTimes();
    } catch (err) {
      // A later entry replaced a directory listed earlier (its path is now a file or gone).
      throw classifyApplyError(err);
    }
    return { entries: this.entries, bytes: this.bytes };
  }

  async prepareRoot(): Promise<void> {
    // An empty target (always the case for a fresh overlay upperdir) lets entries skip the
    // "does something exist here already" lstat until they land in a pre-existing directory.
    const names = await fsp.readdir(this.root);
    if (names.length === 0) this.freshDirs.add('');
    const st = await fsp.lstat(this.root);
    if (!(st.mode & S_ISGID) || st.gid === 0) this.zeroGidDirs.add('');
  }

  /** Lets the event loop run once inline work has held it for a slice. */
  async yieldAfterInline(started: number): Promise<void> {
    const ms = performance.now() - started;
    if (ms > INLINE_SLOW_MS) this.inline = false;
    this.inlineMs += ms;
    if (this.inlineMs < INLINE_SLICE_MS) return;
    this.inlineMs = 0;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /** Whether a file or directory made by root in `parent` is already owned by uid:gid. */
  ownedOnCreate(parent: string, uid: number, gid: number): boolean {
    return this.rootGroup && uid === 0 && gid === 0 && this.zeroGidDirs.has(parent);
  }

  // ---------------------------------------------------------------------------------------
  // Background work bookkeeping

  /**
   * Runs `work` in the background, after any earlier background work on the same path (so two
   * entries for one path apply their metadata in archive order).
   */
  track(abs: string, work: () => Promise<void>): void {
    const prev = this.pendingByPath.get(abs);
    const task = prev ? prev.then(work) : work();
    const p = task.then(
      () => {},
      (err) => this.fail(err),
    );
    const chained = p.finally(() => {
      this.pending.delete(chained);
      if (this.pendingByPath.get(abs) === chained) this.pendingByPath.delete(abs);
    });
    this.pending.add(chained);
    this.pendingByPath.set(abs, chained);
  }

  async waitPath(abs: string): Promise<void> {
    const p = this.pendingByPath.get(abs);
    if (p) await p;
  }

  async drainAll(ignoreFailure = false): Promise<void> {
    while (this.pending.size) {
      await Promise.all([...this.pending]);
    }
    if (!ignoreFailure && this.failure !== undefined) throw this.failure;
  }

  async waitForOpenSlot(): Promise<void> {
    while (this.openFiles >= MAX_OPEN_FILES && this.pending.size) {
      await Promise.race([...this.pending]);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Path resolution inside the root

  /**
   * Resolves an archive directory path (cleaned) to a real path relative to the root,
   * following symlinks with the root as "/" and never leaving it. Returns the components and,
   * for each, whether it exists as a directory, is missing, or is something else.
   */
  async resolve(lexical: string): Promise<{ parts: string[]; kinds: ('dir' | 'missing' | 'other')[] }> {
    const parts: string[] = [];
    const kinds: ('dir' | 'missing' | 'other')[] = [];
    const stack = lexical.split('/').reverse();
    let links = 0;
    while (stack.length) {
      const c = stack.pop()!;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        parts.pop();
        kinds.pop();
        continue;
      }
      const rel = parts.length ? `${parts.join('/')}/${c}` : c;
      const parentKind = kinds.length ? kinds[kinds.length - 1] : 'dir';
      if (parentKind !== 'dir') {
        // Below a missing (or non-directory) component nothing can exist.
        parts.push(c);
        kinds.push('missing');
        continue;
      }
      if (this.knownDirs.has(rel)) {
        parts.push(c);
        kinds.push('dir');
        continue;
      }
      let st: fs.Stats;
      try {
        st = await fsp.lstat(this.abs(rel));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
        parts.push(c);
        kinds.push('missing');
        continue;
      }
      if (st.isSymbolicLink()) {
        if (++links > MAX_SYMLINKS) throw new InvalidArgumentError(`too many levels of symbolic links resolving ${JSON.stringify(lexical)}`);
        const target = await fsp.readlink(this.abs(rel));
        if (target.startsWith('/')) {
          parts.length = 0;
          kinds.length = 0;
        }
        const tparts = target.split('/');
        for (let i = tparts.length - 1; i >= 0; i--) stack.push(tparts[i]!);
        continue;
      }
      if (st.isDirectory()) this.knownDirs.add(rel);
      parts.push(c);
      kinds.push(st.isDirectory() ? 'dir' : 'other');
    }
    return { parts, kinds };
  }

  /** containerd's RootPath + mkparent: the real directory for an archive parent path, created if missing. */
  async ensureParent(lexical: string): Promise<string> {
    if (lexical === '') return '';
    const cached = this.parentCache.get(lexical);
    if (cached !== undefined) return cached;
    const { parts, kinds } = await this.resolve(lexical);
    let rel = '';
    for (let i = 0; i < parts.length; i++) {
      rel = rel ? `${rel}/${parts[i]}` : parts[i]!;
      const kind = kinds[i];
      if (kind === 'dir') continue;
      if (kind === 'other') {
        const err = new Error(`ENOTDIR: not a directory, mkparent '${this.abs(rel)}'`) as NodeJS.ErrnoException;
        err.code = 'ENOTDIR';
        err.syscall = 'mkparent';
        err.path = this.abs(rel);
        throw err;
      }
      await this.mkdirImplicit(rel);
    }
    this.parentCache.set(lexical, rel);
    return rel;
  }

  /** A directory the layer needs but does not list. */
  async mkdirImplicit(rel: string): Promise<void> {
    const abs = this.abs(rel);
    try {
      await fsp.mkdir(abs, 0o755);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const st = await fsp.lstat(abs);
      if (!st.isDirectory()) throw err;
      this.knownDirs.add(rel);
      return;
    }
    this.made.add(rel);
    this.freshDirs.add(rel);
    this.knownDirs.add(rel);
    for (const proot of this.parentRoots) {
      const src = path.join(proot, rel);
      let st: fs.Stats;
      try {
        st = await fsp.lstat(src);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') continue;
        throw err;
      }
      if (!st.isDirectory()) break;
      await fsp.lchown(abs, st.uid, st.gid);
      await fsp.chmod(abs, st.mode & 0o7777);
      await fsp.lutimes(abs, st.atime, st.mtime);
      this.copyXattrs(src, abs);
      if (this.rootGroup && (!(st.mode & S_ISGID) || st.gid === 0)) this.zeroGidDirs.add(rel);
      return;
    }
    await fsp.chmod(abs, 0o755);
    // chmod(2) sets the mode exactly: not setgid, so new files get our gid.
    if (this.rootGroup) this.zeroGidDirs.add(rel);
  }

  copyXattrs(src: string, dst: string): void {
    let names: string[];
    try {
      names = fsx.llistxattr(src);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOTSUP') return;
      throw err;
    }
    for (const name of names) {
      if (name.startsWith('trusted.')) continue;
      const value = fsx.lgetxattr(src, name);
      if (value !== undefined) fsx.lsetxattr(dst, name, value);
    }
  }

  /** Records that this layer unpacked `rel` (an opaque marker keeps it and the way to it). */
  markCreated(rel: string): void {
    this.made.add(rel);
    this.created.add(rel);
    let p = rel;
    for (;;) {
      const i = p.lastIndexOf('/');
      if (i < 0) break;
      p = p.slice(0, i);
      if (this.createdAncestors.has(p)) break;
      this.createdAncestors.add(p);
    }
  }

  /** Forgets everything cached about `rel` and below after it has been removed. */
  forgetTree(rel: string): void {
    const prefix = rel + '/';
    for (const set of [this.knownDirs, this.freshDirs, this.made, this.created, this.zeroGidDirs]) {
      set.delete(rel);
      for (const p of set) if (p.startsWith(prefix)) set.delete(p);
    }
    this.parentCache.clear();
  }

  /** What exists at `rel` right now (undefined: nothing). */
  async existing(rel: string, parent: string): Promise<Kind | undefined> {
    if (this.freshDirs.has(parent) && !this.made.has(rel)) return undefined;
    // A file of this layer may still be being created in the background.
    await this.waitPath(this.abs(rel));
    try {
      const st = await fsp.lstat(this.abs(rel));
      return st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Removes whatever is at `rel` (a directory recursively), after background work on it. */
  async remove(rel: string, kind: Kind): Promise<void> {
    const abs = this.abs(rel);
    if (kind === 'dir') {
      await this.drainAll();
      await fsp.rm(abs, { recursive: true, force: true });
      this.forgetTree(rel);
      return;
    }
    await this.waitPath(abs);
    try {
      await fsp.unlink(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    this.made.delete(rel);
    this.created.delete(rel);
    if (kind === 'symlink') this.parentCache.clear();
  }

  // ---------------------------------------------------------------------------------------
  // Entries

  async handle(e: ReadEntry): Promise<void> {
    this.entries++;
    this.bytes += e.size;
    const kind = entryKind(e.type);
    const name = cleanEntryName(e.path);
    if (!kind) {
      e.resume();
      throw new InvalidArgumentError(`unsupported tar entry type ${e.type} for ${JSON.stringify(e.path)}`);
    }
    if (name === '') {
      // Resolves to the root itself: containerd ignores such entries.
      e.resume();
      return;
    }
    const slash = name.lastIndexOf('/');
    const parentLex = slash < 0 ? '' : name.slice(0, slash);
    const base = slash < 0 ? name : name.slice(slash + 1);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      e.resume();
      await this.whiteout(e, parentLex, base);
      return;
    }
    if (parentLex.includes(WHITEOUT_META_PREFIX) && parentLex.split('/').some((c) => c.startsWith(WHITEOUT_META_PREFIX))) {
      // Content of AUFS bookkeeping directories (".wh..wh.plnk/...") is not part of the image.
      e.resume();
      this.warn(`ignoring whiteout metadata entry ${JSON.stringify(e.path)}`);
      return;
    }

    if ((kind === 'char' || kind === 'block') && !this.allowDevices) {
      e.resume();
      this.warn(`skipping device node ${JSON.stringify(e.path)}: device creation not allowed`);
      return;
    }

    const parent = await this.ensureParent(parentLex);
    const rel = parent ? `${parent}/${base}` : base;
    const abs = this.abs(rel);

    const existing = await this.existing(rel, parent);
    if (existing && !(existing === 'dir' && kind === 'dir')) await this.remove(rel, existing);

    switch (kind) {
      case 'file':
        await this.createFile(e, rel, parent, abs);
        break;
      case 'dir':
        e.resume();
        await this.createDir(e, rel, abs, existing === 'dir');
        break;
      case 'symlink':
        e.resume();
        await this.createSymlink(e, rel, parent, abs);
        break;
      case 'link':
        e.resume();
        await this.createHardlink(e, rel, abs);
        break;
      case 'char':
      case 'block':
      case 'fifo':
        e.resume();
        await this.createNode(e, rel, abs, kind);
        break;
    }
  }

  async whiteout(e: ReadEntry, parentLex: string, base: string): Promise<void> {
    if (base === WHITEOUT_OPAQUE) {
      const dir = await this.ensureParent(parentLex);
      if (this.mode === 'overlay') {
        fsx.lsetxattr(this.abs(dir), OVERLAY_OPAQUE_XATTR, 'y');
      } else {
        await this.drainAll();
        await this.clearOpaque(dir);
      }
      return;
    }
    if (base.startsWith(WHITEOUT_META_PREFIX)) {
      // Other ".wh..wh." names are AUFS bookkeeping (hardlink directories and the like).
      this.warn(`ignoring whiteout metadata entry ${JSON.stringify(e.path)}`);
      return;
    }
    const original = base.slice(WHITEOUT_PREFIX.length);
    if (original === '' || original === '.' || original === '..') {
      throw new InvalidArgumentError(`invalid whiteout name ${JSON.stringify(e.path)}`);
    }
    const parent = await this.ensureParent(parentLex);
    const rel = parent ? `${parent}/${original}` : original;
    const existing = await this.existing(rel, parent);
    if (this.mode === 'direct') {
      if (existing) await this.remove(rel, existing);
      return;
    }
    if (existing) await this.remove(rel, existing);
    const abs = this.abs(rel);
    fsx.mknod(abs, fsx.S_IFCHR, 0);
    this.markCreated(rel);
    await fsp.lchown(abs, e.uid ?? 0, e.gid ?? 0);
  }

  /** Direct-mode opaque directory: removes everything below `dir` this layer did not create. */
  async clearOpaque(dir: string): Promise<void> {
    let names: string[];
    try {
      names = await fsp.readdir(this.abs(dir));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const n of names) {
      const rel = dir ? `${dir}/${n}` : n;
      const keep = this.created.has(rel);
      if (keep || this.createdAncestors.has(rel)) {
        const st = await fsp.lstat(this.abs(rel));
        if (st.isDirectory()) await this.clearOpaque(rel);
        if (keep || st.isDirectory()) continue;
      }
      await fsp.rm(this.abs(rel), { recursive: true, force: true });
      this.forgetTree(rel);
    }
  }

  /** Sets the ownership, xattrs and mode containerd sets on every entry, in its order. */
  async setOwner(abs: string, e: ReadEntry): Promise<void> {
    await fsp.lchown(abs, e.uid ?? 0, e.gid ?? 0).catch((err) => this.ownerRefused(err));
  }

  /**
   * A failed chown: only an unprivileged apply may go on (its files keep the caller's owner, as
   * with containerd run rootless); anything else is thrown again.
   */
  ownerRefused(err: unknown): void {
    if (this.isRoot || (err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
  }

  /** A synchronous chown under the same rule. */
  chownSync(chown: () => void): void {
    try {
      chown();
    } catch (err) {
      this.ownerRefused(err);
    }
  }

  applyXattrs(abs: string, e: ReadEntry, isRegOrDir: boolean): void {
    const xattrs = entryXattrs(e);
    if (!xattrs) return;
    for (const [key, value] of xattrs) {
      if (key.startsWith('trusted.')) {
        this.warn(`ignoring xattr ${key} on ${JSON.stringify(e.path)}: trusted.* attributes are not accepted from archives`);
        continue;
      }
      try {
        fsx.lsetxattr(abs, key, value);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EPERM' && key.startsWith('user.') && !isRegOrDir) {
          // user.* attributes only exist on regular files and directories.
          this.warn(`ignoring xattr ${key} on ${JSON.stringify(e.path)}: ${code}`);
          continue;
        }
        if ((code === 'ENOTSUP' || code === 'EOPNOTSUPP') && !key.startsWith('security.')) {
          this.warn(`ignoring xattr ${key} on ${JSON.stringify(e.path)}: ${code}`);
          continue;
        }
        throw new Error(`failed to set xattr ${key} on ${abs}: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  times(e: ReadEntry): { atime: Date; mtime: Date } {
    const mtime = boundTime(e.mtime);
    const at = e.atime && e.atime.getTime() > mtime.getTime() ? e.atime : mtime;
    return { atime: boundTime(at), mtime };
  }

  /**
   * Regular files. Small ones are collected in memory (they usually sit in the chunk already
   * parsed) and created entirely in the background, so the entry loop never waits on the
   * thread pool for them. Large ones are opened first and their data is written as it streams.
   */
  async createFile(e: ReadEntry, rel: string, parent: string, abs: string): Promise<void> {
    if (e.size <= SMALL_FILE_BYTES) {
      if (this.inline) return this.createSmallFileInline(e, rel, parent, abs);
      return this.createSmallFile(e, rel, abs);
    }
    return this.createLargeFile(e, rel, abs);
  }

  /** Collects an entry's data; resolves early (with what it has) if the apply fails. */
  async readEntryData(e: ReadEntry, onChunk: (chunk: Buffer) => void): Promise<void> {
    let streamError: unknown;
    await this.waitFor((done) => {
      const onError = (err: unknown) => {
        streamError = err;
        done();
      };
      e.on('data', (chunk: Buffer) => {
        if (this.failure === undefined) onChunk(chunk);
      });
      e.once('end', done);
      e.once('error', onError);
      return () => {
        e.off('end', done);
        e.off('error', onError);
      };
    });
    if (streamError !== undefined) throw streamError;
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * A small file made inline: open (with its final mode when nothing changes it later), write,
   * owner when it differs from root:root, xattrs, mode, times, close - containerd's order.
   */
  async createSmallFileInline(e: ReadEntry, rel: string, parent: string, abs: string): Promise<void> {
    const chunks: Buffer[] = [];
    await this.readEntryData(e, (c) => chunks.push(c));
    // Earlier background work on this path (from before inline work was switched off).
    await this.waitPath(abs);
    const started = performance.now();
    this.markCreated(rel);
    const { atime, mtime } = this.times(e);
    const uid = e.uid ?? 0;
    const gid = e.gid ?? 0;
    const mode = (e.mode ?? 0) & 0o7777;
    const owned = this.ownedOnCreate(parent, uid, gid);
    const umask = processUmask();
    // chown clears only setuid/setgid bits: any other mode the umask keeps can be set by open.
    const finalMode = (mode & 0o7000) === 0 && umask !== undefined && (mode & umask) === 0;
    const fd = fs.openSync(abs, CREATE_FLAGS, finalMode ? mode : 0o600);
    try {
      const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      for (let off = 0; off < data.length;) {
        const n = fs.writeSync(fd, data, off, data.length - off, off);
        if (n === 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
        off += n;
      }
      if (!owned) this.chownSync(() => fs.fchownSync(fd, uid, gid));
      this.applyXattrs(abs, e, true);
      if (!finalMode) fs.fchmodSync(fd, mode);
      fs.futimesSync(fd, atime, mtime);
    } finally {
      fs.closeSync(fd);
    }
    await this.yieldAfterInline(started);
  }

  async createSmallFile(e: ReadEntry, rel: string, abs: string): Promise<void> {
    while ((this.openFiles >= MAX_OPEN_FILES || this.inflightBytes > HIGH_WATER_BYTES) && this.pending.size) {
      await Promise.race([...this.pending]);
    }
    const chunks: Buffer[] = [];
    await this.readEntryData(e, (c) => chunks.push(c));
    const size = e.size;
    this.inflightBytes += size;
    this.openFiles++;
    this.markCreated(rel);
    const { atime, mtime } = this.times(e);
    const task = async () => {
      const fd = await openFd(abs, CREATE_FLAGS, 0o600);
      try {
        if (size > 0) await writeAllAt(fd, chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), 0);
        await this.finishFile(fd, abs, e, atime, mtime);
      } finally {
        await closeFd(fd);
      }
    };
    this.track(abs, () =>
      task().finally(() => {
        this.openFiles--;
        this.inflightBytes -= size;
      }),
    );
  }

  async createLargeFile(e: ReadEntry, rel: string, abs: string): Promise<void> {
    await this.waitForOpenSlot();
    const fd = await openFd(abs, CREATE_FLAGS, 0o600);
    this.openFiles++;
    this.markCreated(rel);

    const writes: Promise<void>[] = [];
    let position = 0;
    try {
      await this.readEntryData(e, (chunk) => {
        const pos = position;
        position += chunk.length;
        this.inflightBytes += chunk.length;
        const w = writeAllAt(fd, chunk, pos);
        writes.push(w);
        w.then(
          () => this.written(chunk.length),
          (err) => {
            this.written(chunk.length);
            this.fail(err);
          },
        );
        if (this.inflightBytes > HIGH_WATER_BYTES && this.failure === undefined) {
          this.pausedEntry = e;
          e.pause();
        }
      });
    } catch (err) {
      this.track(abs, () => Promise.allSettled(writes).then(() => closeFd(fd)).finally(() => this.openFiles--));
      throw err;
    }

    const { atime, mtime } = this.times(e);
    const finish = async () => {
      try {
        await Promise.all(writes);
        await this.finishFile(fd, abs, e, atime, mtime);
      } finally {
        this.openFiles--;
        await closeFd(fd);
      }
    };
    this.track(abs, finish);
  }

  /** Owner, xattrs, mode, times - containerd's order (chown would clear setuid and capabilities). */
  async finishFile(fd: number, abs: string, e: ReadEntry, atime: Date, mtime: Date): Promise<void> {
    await fchownFd(fd, e.uid ?? 0, e.gid ?? 0).catch((err) => this.ownerRefused(err));
    this.applyXattrs(abs, e, true);
    await fchmodFd(fd, (e.mode ?? 0) & 0o7777);
    await futimesFd(fd, atime, mtime);
  }

  written(n: number): void {
    this.inflightBytes -= n;
    if (this.pausedEntry && this.inflightBytes <= LOW_WATER_BYTES) {
      const e = this.pausedEntry;
      this.pausedEntry = undefined;
      e.resume();
    }
  }

  async createDir(e: ReadEntry, rel: string, abs: string, exists: boolean): Promise<void> {
    if (this.inline) {
      // A second entry for the same directory waits for background work on it first.
      await this.waitPath(abs);
      const started = performance.now();
      if (!exists) {
        fs.mkdirSync(abs, 0o700);
        this.freshDirs.add(rel);
      }
      this.knownDirs.add(rel);
      this.markCreated(rel);
      const { atime, mtime } = this.times(e);
      this.dirTimes.push({ abs, atime, mtime });
      const uid = e.uid ?? 0;
      const gid = e.gid ?? 0;
      const mode = (e.mode ?? 0) & 0o7777;
      this.chownSync(() => fs.lchownSync(abs, uid, gid));
      this.applyXattrs(abs, e, true);
      fs.chmodSync(abs, mode);
      // What a file created in here gets: the directory's gid when setgid, else ours.
      if (this.rootGroup && (!(mode & S_ISGID) || gid === 0)) this.zeroGidDirs.add(rel);
      else this.zeroGidDirs.delete(rel);
      await this.yieldAfterInline(started);
      return;
    }
    this.zeroGidDirs.delete(rel);
    if (!exists) {
      await fsp.mkdir(abs, 0o700);
      this.freshDirs.add(rel);
    }
    this.knownDirs.add(rel);
    this.markCreated(rel);
    const { atime, mtime } = this.times(e);
    this.dirTimes.push({ abs, atime, mtime });
    this.track(abs, async () => {
      await this.setOwner(abs, e);
      this.applyXattrs(abs, e, true);
      await fsp.chmod(abs, (e.mode ?? 0) & 0o7777);
    });
  }

  async createSymlink(e: ReadEntry, rel: string, parent: string, abs: string): Promise<void> {
    const target = e.linkpath ?? '';
    if (this.inline) {
      await this.waitPath(abs);
      const started = performance.now();
      fs.symlinkSync(target, abs);
      this.markCreated(rel);
      const { atime, mtime } = this.times(e);
      const uid = e.uid ?? 0;
      const gid = e.gid ?? 0;
      if (!this.ownedOnCreate(parent, uid, gid)) this.chownSync(() => fs.lchownSync(abs, uid, gid));
      this.applyXattrs(abs, e, false);
      fs.lutimesSync(abs, atime, mtime);
      await this.yieldAfterInline(started);
      return;
    }
    await fsp.symlink(target, abs);
    this.markCreated(rel);
    const { atime, mtime } = this.times(e);
    this.track(abs, async () => {
      await this.setOwner(abs, e);
      this.applyXattrs(abs, e, false);
      await fsp.lutimes(abs, atime, mtime);
    });
  }

  async createHardlink(e: ReadEntry, rel: string, abs: string): Promise<void> {
    const linkname = e.linkpath ?? '';
    const relative = linkname.replace(/^\/+/, '');
    if (path.normalize(relative).split('/')[0] === '..' || relative === '') {
      throw new InvalidArgumentError(`hardlink ${JSON.stringify(e.path)} points outside the root (${JSON.stringify(linkname)})`);
    }
    const cleaned = cleanEntryName(relative);
    if (cleaned === '') throw new InvalidArgumentError(`hardlink ${JSON.stringify(e.path)} points at the root directory`);
    const slash = cleaned.lastIndexOf('/');
    const { parts, kinds } = await this.resolve(slash < 0 ? '' : cleaned.slice(0, slash));
    if (kinds.some((k) => k !== 'dir')) {
      const err = new Error(`ENOENT: no such file or directory, link '${linkname}' -> '${e.path}'`) as NodeJS.ErrnoException;
      err.code = 'ENOENT';
      throw new NotFoundError(`hardlink target ${JSON.stringify(linkname)} of ${JSON.stringify(e.path)}`, { cause: err });
    }
    parts.push(slash < 0 ? cleaned : cleaned.slice(slash + 1));
    const targetAbs = this.abs(parts.join('/'));
    await this.waitPath(targetAbs);
    try {
      await fsp.link(targetAbs, abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new NotFoundError(`hardlink target ${JSON.stringify(linkname)} of ${JSON.stringify(e.path)}`, { cause: err });
      }
      throw err;
    }
    this.markCreated(rel);
    const st = await fsp.lstat(abs);
    await this.setOwner(abs, e);
    this.applyXattrs(abs, e, st.isFile() || st.isDirectory());
    const { atime, mtime } = this.times(e);
    if (!st.isSymbolicLink()) await fsp.chmod(abs, (e.mode ?? 0) & 0o7777);
    await fsp.lutimes(abs, atime, mtime);
  }

  async createNode(e: ReadEntry, rel: string, abs: string, kind: 'char' | 'block' | 'fifo'): Promise<void> {
    const type = kind === 'char' ? fsx.S_IFCHR : kind === 'block' ? fsx.S_IFBLK : fsx.S_IFIFO;
    const dev = kind === 'fifo' ? 0n : fsx.makedev(e.header.devmaj ?? 0, e.header.devmin ?? 0);
    fsx.mknod(abs, type | ((e.mode ?? 0) & 0o7777), dev);
    this.markCreated(rel);
    const { atime, mtime } = this.times(e);
    this.track(abs, async () => {
      await this.setOwner(abs, e);
      this.applyXattrs(abs, e, false);
      await fsp.chmod(abs, (e.mode ?? 0) & 0o7777);
      await fsp.lutimes(abs, atime, mtime);
    });
  }

  async applyDirTimes(): Promise<void> {
    // A directory listed more than once gets the times of its last entry (set concurrently,
    // the calls for one path would race).
    const last = new Map<string, DirTimes>();
    for (const t of this.dirTimes) {
      last.delete(t.abs);
      last.set(t.abs, t);
    }
    const dirTimes = [...last.values()];
    if (this.inline) {
      let started = performance.now();
      for (const { abs, atime, mtime } of dirTimes) {
        try {
          fs.lutimesSync(abs, atime, mtime);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        if (performance.now() - started >= INLINE_SLICE_MS) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          started = performance.now();
        }
      }
      return;
    }
    const BATCH = 64;
    for (let i = 0; i < dirTimes.length; i += BATCH) {
      await Promise.all(
        dirTimes.slice(i, i + BATCH).map(async ({ abs, atime, mtime }) => {
          try {
            await fsp.lutimes(abs, atime, mtime);
          } catch (err) {
            // The directory may have been whited out later in the same layer.
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          }
        }),
      );
    }
  }
}
