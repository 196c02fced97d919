/**
 * Task bundles: `<state>/<ns>/<id>` (0700) holding config.json (the spec Any's raw bytes),
 * rootfs/ and a `work` symlink to `<root>/<ns>/<id>`, the shim's persistent work dir.
 * Removal unmounts the rootfs, renames each dir to a dot-name first (so a crash never leaves
 * a half-removed bundle that looks live), then deletes it.
 *
 * The file operations are synchronous: a bundle is a handful of small entries on a local
 * state directory, and each asynchronous call would be a thread-pool round trip costing
 * more CPU (thread wake-ups, completion callbacks) than the operation itself; run8 makes
 * ~35 of them per container.
 */
import { chmodSync, chownSync, mkdirSync, readlinkSync, renameSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AlreadyExistsError, InvalidArgumentError, messageOf } from '../../../core/errdefs/errdefs.js';
import { validateIdentifier } from '../../../core/identifiers/identifiers.js';
import { removeTreeHiddenFirstSync, removeTreeSync } from '../../../core/sys/remove-tree.js';

export interface Bundle {
  id: string;
  namespace: string;
  /** The bundle directory (in the state dir). */
  path: string;
}

const errno = (err: unknown) => (err as NodeJS.ErrnoException).code;

/** The gid that container root maps to when the spec asks for a user namespace (0 when none). */
export function remappedGid(spec: Uint8Array): number {
  let parsed: { linux?: { gidMappings?: { containerID?: number; hostID?: number }[] } };
  try {
    parsed = JSON.parse(Buffer.from(spec).toString('utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`invalid spec: ${messageOf(err)}`);
  }
  for (const m of parsed?.linux?.gidMappings ?? []) {
    if ((m.containerID ?? 0) === 0) return m.hostID ?? 0;
  }
  return 0;
}

export function bundleFor(state: string, namespace: string, id: string): Bundle {
  return { id, namespace, path: join(state, namespace, id) };
}

export async function newBundle(root: string, state: string, namespace: string, id: string, spec: Uint8Array): Promise<Bundle> {
  return makeBundle(root, state, namespace, id, spec, undefined);
}

/**
 * A task's bundle made from a spare shim's directory (spares.ts): the directory, with the
 * shim's address, log FIFO and working directory in it, is renamed to the bundle path and
 * gets the task's spec and work dir.
 */
export async function adoptBundle(root: string, state: string, namespace: string, id: string, spec: Uint8Array, sparePath: string): Promise<Bundle> {
  return makeBundle(root, state, namespace, id, spec, sparePath);
}

function makeBundle(root: string, state: string, namespace: string, id: string, spec: Uint8Array, sparePath: string | undefined): Bundle {
  try {
    validateIdentifier(id);
  } catch (err) {
    throw new InvalidArgumentError(`invalid task id ${id}: ${messageOf(err).replace(/: invalid argument$/, '')}`);
  }
  const bundle = bundleFor(state, namespace, id);
  const work = join(root, namespace, id);
  const made: string[] = [];
  const gid = remappedGid(spec);
  try {
    mkdirSync(dirname(bundle.path), { recursive: true, mode: 0o711 });
    mkdirSync(dirname(work), { recursive: true, mode: 0o711 });
    try {
      // Claims the id even for a spare: the rename below would replace an empty directory.
      mkdirSync(bundle.path, { mode: 0o700 });
    } catch (err) {
      if (errno(err) === 'EEXIST') throw new AlreadyExistsError(`bundle ${bundle.path}`);
      throw err;
    }
    made.push(bundle.path);
    if (sparePath) renameSync(sparePath, bundle.path);
    if (gid !== 0) {
      chownSync(bundle.path, -1, gid);
      chmodSync(bundle.path, 0o710);
    }
    if (!sparePath) mkdirSync(join(bundle.path, 'rootfs'), { mode: 0o711 });
    try {
      mkdirSync(work, { mode: 0o711 });
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw err;
      removeTreeSync(work);
      mkdirSync(work, { mode: 0o711 });
    }
    made.push(work);
    symlinkSync(work, join(bundle.path, 'work'));
    writeFileSync(join(bundle.path, 'config.json'), spec, { mode: 0o666 });
    return bundle;
  } catch (err) {
    for (const p of made) {
      try { removeTreeSync(p); } catch { /* best effort while reporting err */ }
    }
    throw err;
  }
}

/** Removes the bundle and its work dir; the rootfs is unmounted first. */
export async function deleteBundle(bundle: Bundle): Promise<void> {
  let work: string | undefined;
  try {
    work = readlinkSync(join(bundle.path, 'work'));
  } catch {
    work = undefined;
  }
  const rootfs = join(bundle.path, 'rootfs');
  const { unmountAll } = await import('../../../core/mount/mount.js');
  await unmountAll(rootfs, 0);
  try {
    rmdirSync(rootfs);
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw new Error(`failed to remove bundle rootfs: ${messageOf(err)}`, { cause: err });
  }
  let bundleErr: unknown;
  try {
    removeTreeHiddenFirstSync(bundle.path);
  } catch (err) {
    bundleErr = err;
  }
  if (work) removeTreeHiddenFirstSync(work);
  if (bundleErr) throw bundleErr;
}
