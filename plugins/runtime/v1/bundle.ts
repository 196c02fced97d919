/**
 * Runtime v1 bundles. A task's bundle is `<state>/<ns>/<id>` (0700, parents 0711) with
 * config.json (the spec Any's value bytes, 0666) and an empty rootfs/ (0711) that the shim
 * mounts the task's rootfs onto; the shim adds init.pid and log.json, the daemon `address`
 * and `shim.pid`. Its work dir is `<root>/<ns>/<id>` (0711): the shim's stdout/stderr FIFOs
 * and runc's scratch data. Unlike v2 there is no `work` symlink: both paths are derived.
 *
 * The shim's socket lives outside both: `unix:///run/containerd/s/<sha256 of
 * "<daemon address>/<ns>/<id>">` (that directory is fixed, whatever the state dir).
 */
import { createHash } from 'node:crypto';
import { chmod, chown, mkdir, open, readFile, rename, rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { AlreadyExistsError, InvalidArgumentError, messageOf } from '../../../core/errdefs/errdefs.js';
import { removeTreeHiddenFirstSync } from '../../../core/sys/remove-tree.js';

/** Where containerd puts shim sockets, independent of its configured state dir. */
export const SOCKET_ROOT = '/run/containerd';

export interface V1Bundle {
  id: string;
  namespace: string;
  /** `<state>/<ns>/<id>`. */
  path: string;
  /** `<root>/<ns>/<id>`. */
  workDir: string;
}

const errnoOf = (err: unknown) => (err as NodeJS.ErrnoException).code;

export function loadBundle(root: string, state: string, namespace: string, id: string): V1Bundle {
  return { id, namespace, path: join(state, namespace, id), workDir: join(root, namespace, id) };
}

/** The address a fresh shim for this task listens on. */
export function shimAddress(daemonAddress: string, namespace: string, id: string): string {
  const digest = createHash('sha256').update(join(daemonAddress, namespace, id)).digest('hex');
  return `unix://${join(SOCKET_ROOT, 's', digest)}`;
}

/** The abstract address shims of containerd ≤ 1.2 used; tried when a bundle has no `address`. */
export function legacyShimAddress(namespace: string, id: string): string {
  return join('/', 'containerd-shim', namespace, id, 'shim.sock');
}

/** The gid container root maps to under a user namespace (0 without one). */
export function remappedGid(spec: Uint8Array): number {
  let doc: { linux?: { gidMappings?: { containerID?: number; hostID?: number }[] | null } | null };
  try {
    doc = JSON.parse(Buffer.from(spec).toString('utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`invalid spec: ${messageOf(err)}`);
  }
  const mapping = (doc?.linux?.gidMappings ?? []).find((m) => (m.containerID ?? 0) === 0);
  return mapping?.hostID ?? 0;
}

export async function newBundle(root: string, state: string, namespace: string, id: string, spec: Uint8Array): Promise<V1Bundle> {
  const bundle = loadBundle(root, state, namespace, id);
  const gid = remappedGid(spec);
  await mkdir(dirname(bundle.path), { recursive: true, mode: 0o711 });
  try {
    await mkdir(bundle.path, { mode: 0o700 });
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') throw new AlreadyExistsError(`bundle ${bundle.path}`);
    throw err;
  }
  let workMade = false;
  try {
    if (gid !== 0) {
      // The remapped root must be able to reach the rootfs and config below the bundle.
      await chown(bundle.path, -1, gid);
      await chmod(bundle.path, 0o710);
    }
    await mkdir(bundle.workDir, { recursive: true, mode: 0o711 });
    workMade = true;
    await mkdir(join(bundle.path, 'rootfs'), { recursive: true, mode: 0o711 });
    await writeBytes(join(bundle.path, 'config.json'), spec, 0o666);
    return bundle;
  } catch (err) {
    await rm(bundle.path, { recursive: true, force: true }).catch(() => undefined);
    if (workMade) await rm(bundle.workDir, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
}

async function writeBytes(path: string, data: Uint8Array, mode: number): Promise<void> {
  const f = await open(path, 'w', mode);
  try {
    await f.writeFile(data);
  } finally {
    await f.close();
  }
}

/**
 * Writes `<dir>/<name>` through `.<name>` (created exclusively, synced) and a rename, so a
 * reader never sees a partial address or pid.
 */
export async function writeBundleFile(dir: string, name: string, content: string): Promise<void> {
  const temp = join(dir, `.${name}`);
  const f = await open(temp, 'wx', 0o666);
  try {
    await f.writeFile(content);
    await f.sync();
  } finally {
    await f.close();
  }
  await rename(temp, join(dir, name));
}

/** An integer file (init.pid, shim.pid); 0 when it is missing or unreadable. */
export async function readPidFile(path: string): Promise<number> {
  try {
    const n = Number.parseInt((await readFile(path, 'utf8')).trim(), 10);
    return Number.isFinite(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

/** The bundle's recorded shim address, or '' when there is none. */
export async function readAddress(bundle: V1Bundle): Promise<string> {
  try {
    return await readFile(join(bundle.path, 'address'), 'utf8');
  } catch {
    return '';
  }
}

/** Removes the socket file behind a `unix://` address (abstract names need nothing). */
export async function removeSocket(address: string): Promise<void> {
  if (!address.startsWith('unix://')) return;
  await rm(address.slice('unix://'.length), { force: true });
}

/**
 * Deletes the bundle: the shim's socket file, then the bundle and the work dir. Whatever is
 * still mounted on rootfs/ is unmounted first — the shim normally did that when it deleted
 * the init process, but removing a tree with a live snapshot mounted in it would empty the
 * snapshot.
 */
export async function deleteBundle(bundle: V1Bundle): Promise<void> {
  const address = await readAddress(bundle);
  if (address) await removeSocket(address).catch(() => undefined);
  const rootfs = join(bundle.path, 'rootfs');
  const { unmountAll } = await import('../../../core/mount/mount.js');
  await unmountAll(rootfs, 0);
  try {
    await rmdir(rootfs);
  } catch (err) {
    const code = errnoOf(err);
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY') throw err;
  }
  let first: unknown;
  try {
    removeTreeHiddenFirstSync(bundle.path);
  } catch (err) {
    first = err;
  }
  try {
    removeTreeHiddenFirstSync(bundle.workDir);
  } catch (err) {
    if (first) throw new Error(`Failed to remove both bundle and workdir locations: ${messageOf(err)}: ${messageOf(first)}`, { cause: first });
    throw err;
  }
  if (first) throw first;
}
