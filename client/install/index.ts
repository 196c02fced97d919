/**
 * Installing the binaries of an image on the client host, as `ctr install` does: the image's
 * layers are read through the Content service, decompressed here, and only the tar entries
 * whose parent directory is exactly `bin` (and `lib`, with `libs`) are written into the
 * install path — the daemon's opt directory (exported by io.containerd.internal.v1.opt) or
 * an explicit one.
 *
 *   await installImage(conn, 'docker.io/example/tools:1', { libs: true });
 *
 * Writes stay inside the install path: entries are matched on their cleaned names (so
 * `usr/bin/x`, `/bin/x` and `../bin/x` never match), files are created under temporary names
 * with O_EXCL and renamed into place (a symlink already at the target is replaced, never
 * followed), hard links may only point inside the path, and `bin`/`lib` must be real
 * directories. Without `replace`, a target that already exists (and was not written by this
 * same install, as a later layer may update an earlier one) is the error
 * `cannot replace <name> in <path>`.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { posix, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { Parser, type ReadEntry } from 'tar';
import { Code, InvalidArgumentError, RemoteError } from '../../core/errdefs/errdefs.js';
import type { Descriptor } from '../../core/images/images.js';
import type { Connection } from '../connection.js';
import { ContentClient } from '../images/content.js';
import { resolveManifest } from '../images/image.js';
import { getImageRecord } from '../images/store.js';
import { defaultMatcher, type MatchComparer } from '../platforms/index.js';
import { decompressDetected } from '../../plugins/differ/walking/archive/compression.js';

export interface InstallOptions {
  /** Also install entries of `lib/`. */
  libs?: boolean;
  /** Overwrite files that already exist in the install path. */
  replace?: boolean;
  /** Install here instead of the daemon's opt directory. */
  path?: string;
  /** Which manifest of a multi-platform image (default: this host, as ctr). */
  platform?: MatchComparer;
}

export interface InstallResult {
  path: string;
  /** Names written (relative to the path, e.g. `bin/tool`), in order. */
  installed: string[];
  /** Selected entries that were not written (device nodes, fifos), with the reason. */
  skipped: { name: string; reason: string }[];
}

/** The opt path the daemon exports: Introspection.Plugins(["id==opt"]).exports.path. */
export async function optPath(conn: Connection): Promise<string> {
  const { IntrospectionDefinition } = await import('../../api/gen/services/introspection/v1/introspection.js');
  const res = await conn.service(IntrospectionDefinition).plugins({ filters: ['id==opt'] });
  if (res.plugins.length !== 1) throw new Error('opt service not enabled');
  const path = res.plugins[0]!.exports?.path;
  if (!path) throw new Error('opt path not exported');
  return path;
}

/** Installs the `bin/` (and `lib/`) entries of image `ref`; see the module comment. */
export async function installImage(conn: Connection, ref: string, opts: InstallOptions = {}): Promise<InstallResult> {
  const record = await getImageRecord(conn, ref);
  const path = opts.path || (await optPath(conn));
  const cs = new ContentClient(conn);
  const { manifest } = await resolveManifest(cs, record.target, opts.platform ?? defaultMatcher());
  const target = new InstallTarget(path, opts);
  await target.open();
  for (const layer of manifest.layers) {
    await target.applyLayer(await decompressDetected(cs.readStream(layer.digest)), layer);
  }
  return target.result();
}

/** The name as Go's filepath.Clean leaves it (no `./`, no trailing slash, `..` folded). */
export function cleanName(name: string): string {
  const n = posix.normalize(name.replace(/\/+$/, '') || '.');
  return n.length > 1 ? n.replace(/\/+$/, '') : n;
}

/** Which top directory an entry is installed under ('bin' / 'lib'), or undefined if it is not installed. */
export function selectedDir(name: string, libs: boolean): 'bin' | 'lib' | undefined {
  const dir = posix.dirname(cleanName(name));
  if (dir === 'bin') return 'bin';
  if (libs && dir === 'lib') return 'lib';
  return undefined;
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/**
 * One install: the checked root, and the names this install has written so far (a later
 * layer may replace or white out what an earlier one installed, without --replace).
 */
export class InstallTarget {
  readonly root: string;
  private realRoot = '';
  private readonly written = new Set<string>();
  private readonly order: string[] = [];
  private readonly skipped: InstallResult['skipped'] = [];
  private readonly readyDirs = new Set<string>();
  private readonly asRoot = process.getuid?.() === 0;

  constructor(path: string, private readonly opts: Pick<InstallOptions, 'libs' | 'replace'> = {}) {
    if (!path) throw new InvalidArgumentError('install path must not be empty');
    this.root = resolve(path);
  }

  /** Creates the install path if needed and pins its real location. */
  async open(): Promise<void> {
    await fsp.mkdir(this.root, { recursive: true, mode: 0o711 });
    this.realRoot = await fsp.realpath(this.root);
  }

  result(): InstallResult {
    return { path: this.root, installed: [...this.order], skipped: [...this.skipped] };
  }

  /** Applies one uncompressed layer tar stream. `layer` only names the blob in errors. */
  async applyLayer(tarStream: Readable, layer?: Pick<Descriptor, 'digest'>): Promise<void> {
    if (!this.realRoot) await this.open();
    try {
      await eachEntry(tarStream, (e) => this.entry(e));
    } catch (err) {
      // Name the layer for tar and read errors; install refusals read as ctr prints them.
      if (layer && err instanceof Error && !(err instanceof InstallError)) err.message = `layer ${layer.digest}: ${err.message}`;
      throw err;
    }
  }

  private async entry(e: ReadEntry): Promise<void> {
    const top = selectedDir(e.path, !!this.opts.libs);
    if (!top) {
      e.resume();
      return;
    }
    const name = cleanName(e.path);
    const base = posix.basename(name);
    await this.ensureDir(top);
    const dest = `${this.root}/${name}`;

    if (base === OPAQUE) {
      // The layer hides what lower layers put in this directory: drop what we installed there.
      e.resume();
      for (const w of [...this.written]) {
        if (posix.dirname(w) === top) await this.forget(w);
      }
      return;
    }
    if (base.startsWith(WHITEOUT)) {
      e.resume();
      const hidden = posix.join(top, base.slice(WHITEOUT.length));
      if (this.written.has(hidden)) await this.forget(hidden);
      return;
    }

    const existing = await lstatOrUndefined(dest);
    if (existing && !this.opts.replace && !this.written.has(name)) {
      e.resume();
      throw installError(`cannot replace ${name} in ${this.root}`);
    }

    switch (e.type) {
      case 'File':
      case 'OldFile':
      case 'ContiguousFile':
        await this.placeFile(e, name, dest, existing);
        break;
      case 'SymbolicLink':
        e.resume();
        await this.placeSymlink(e, name, dest, existing);
        break;
      case 'Link':
        e.resume();
        await this.placeHardlink(e, name, dest, existing);
        break;
      case 'Directory':
        e.resume();
        await this.placeDir(e, name, dest, existing);
        break;
      default:
        e.resume();
        this.skipped.push({ name, reason: `${e.type} entries are not installed` });
        return;
    }
    if (!this.written.has(name)) this.order.push(name);
    this.written.add(name);
  }

  /** `<root>/bin` (or lib) must be a real directory of ours, never a symlink to elsewhere. */
  private async ensureDir(top: string): Promise<void> {
    if (this.readyDirs.has(top)) return;
    const dir = `${this.root}/${top}`;
    const st = await lstatOrUndefined(dir);
    if (!st) await fsp.mkdir(dir, { mode: 0o711 });
    else if (!st.isDirectory()) throw installError(`${dir} is not a directory; refusing to install through it`);
    this.readyDirs.add(top);
  }

  private tempName(dest: string): string {
    return `${posix.dirname(dest)}/.install-${process.pid}-${randomBytes(6).toString('hex')}`;
  }

  /** Makes room at `dest` for an entry of another shape (a directory where a file goes). */
  private async clear(dest: string, existing: import('node:fs').Stats | undefined, forDir: boolean): Promise<void> {
    if (!existing) return;
    if (existing.isDirectory() && !forDir) await fsp.rm(dest, { recursive: true, force: true });
    else if (!existing.isDirectory() && forDir) await fsp.rm(dest, { force: true });
  }

  private async finish(path: string, e: ReadEntry, symlink: boolean): Promise<void> {
    if (this.asRoot && e.uid !== undefined && e.gid !== undefined) await fsp.lchown(path, e.uid, e.gid);
    if (!symlink) await fsp.chmod(path, (e.mode ?? 0o755) & 0o7777);
    const mtime = e.mtime ?? new Date();
    await (symlink ? fsp.lutimes(path, mtime, mtime) : fsp.utimes(path, mtime, mtime));
  }

  private async placeFile(e: ReadEntry, _name: string, dest: string, existing: import('node:fs').Stats | undefined): Promise<void> {
    const tmp = this.tempName(dest);
    // O_EXCL: the temporary name is new, so nothing (not even a planted symlink) is followed.
    const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of e as AsyncIterable<Buffer>) await fh.write(chunk);
    } catch (err) {
      await fh.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    try {
      await this.finish(tmp, e, false);
      await this.clear(dest, existing, false);
      await fsp.rename(tmp, dest);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  }

  private async placeSymlink(e: ReadEntry, _name: string, dest: string, existing: import('node:fs').Stats | undefined): Promise<void> {
    // The link text is stored as is; it is never followed while installing.
    const tmp = this.tempName(dest);
    await fsp.symlink(e.linkpath ?? '', tmp);
    try {
      await this.finish(tmp, e, true);
      await this.clear(dest, existing, false);
      await fsp.rename(tmp, dest);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  }

  private async placeHardlink(e: ReadEntry, name: string, dest: string, existing: import('node:fs').Stats | undefined): Promise<void> {
    // Link names are relative to the layer root; the source must resolve inside the path.
    const linkName = cleanName((e.linkpath ?? '').replace(/^\/+/, ''));
    if (!linkName || linkName === '.' || linkName === '..' || linkName.startsWith('../')) {
      throw installError(`hard link ${name} -> ${e.linkpath}: target outside of ${this.root}`);
    }
    const source = `${this.root}/${linkName}`;
    const parent = await fsp.realpath(posix.dirname(source)).catch(() => undefined);
    if (!parent || (parent !== this.realRoot && !parent.startsWith(this.realRoot + sep))) {
      throw installError(`hard link ${name} -> ${e.linkpath}: target outside of ${this.root}`);
    }
    const st = await lstatOrUndefined(source);
    if (!st) throw installError(`hard link ${name} -> ${e.linkpath}: target was not installed`);
    if (st.isDirectory()) throw installError(`hard link ${name} -> ${e.linkpath}: target is a directory`);
    const tmp = this.tempName(dest);
    await fsp.link(source, tmp);
    try {
      await this.clear(dest, existing, false);
      await fsp.rename(tmp, dest);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  }

  private async placeDir(e: ReadEntry, _name: string, dest: string, existing: import('node:fs').Stats | undefined): Promise<void> {
    await this.clear(dest, existing, true);
    if (!existing || !existing.isDirectory()) await fsp.mkdir(dest, { mode: 0o700 });
    await this.finish(dest, e, false);
  }

  private async forget(name: string): Promise<void> {
    await fsp.rm(`${this.root}/${name}`, { recursive: true, force: true });
    this.written.delete(name);
    const i = this.order.indexOf(name);
    if (i >= 0) this.order.splice(i, 1);
  }
}

/** A refusal to install (FAILED_PRECONDITION), worded exactly as ctr words it. */
export class InstallError extends RemoteError {
  constructor(message: string) {
    super(Code.FAILED_PRECONDITION, message);
  }
}

const installError = (message: string) => new InstallError(message);

async function lstatOrUndefined(p: string) {
  try {
    return await fsp.lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Runs `fn` for each entry of a tar stream, one at a time; `fn` must consume the entry (read
 * it or `resume()` it). node-tar hands out the next entry only once the current one has been
 * read, and its write() reports backpressure, so memory stays bounded by one chunk.
 */
export function eachEntry(input: Readable, fn: (e: ReadEntry) => Promise<void>): Promise<void> {
  return new Promise<void>((resolvePromise, reject) => {
    const parser = new Parser();
    let chain = Promise.resolve();
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      input.unpipe(parser);
      input.destroy();
      reject(err);
    };
    parser.on('entry', (e: ReadEntry) => {
      chain = chain.then(async () => {
        if (failed) {
          e.resume();
          return;
        }
        await fn(e);
      }).catch(fail);
    });
    parser.on('warn', (code: string, message: string | Error) => {
      const text = message instanceof Error ? message.message : String(message);
      // An empty layer (no entries, or zero bytes) is valid.
      if (code === 'TAR_BAD_ARCHIVE' && text === 'Unrecognized archive format') return;
      if (code === 'TAR_ENTRY_INFO' || code === 'TAR_ENTRY_UNSUPPORTED') return;
      fail(new InvalidArgumentError(`invalid tar archive: ${text}`));
    });
    parser.on('error', fail);
    parser.on('end', () => {
      chain.then(() => { if (!failed) resolvePromise(); }, fail);
    });
    input.on('error', fail);
    input.pipe(parser);
  });
}
