/**
 * Running a container in a user namespace, as containerd's client does it for `ctr run
 * --uidmap/--gidmap`: the ID mappings, and a root filesystem whose files are owned by the
 * host IDs the container's root maps to. The image's unpacked snapshot is left as it is; a
 * committed copy with shifted ownership (`<chain id>-<uid>-<gid>`) is made once and shared by
 * every container run with the same mapping.
 */
import { lchown, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isNotFound } from '../core/errdefs/errdefs.js';

export interface IDMapping {
  containerID: number;
  hostID: number;
  size: number;
}

const MAX_UINT32 = 0xffffffff;

/**
 * An unsigned 32-bit number in Go's syntax for base 0 (`strconv.ParseUint(s, 0, 32)`):
 * decimal, `0x`/`0o`/`0b` prefixes, a leading `0` for octal, `_` between digits. Errors are
 * worded as Go's.
 */
export function parseGoUint32(text: string): number {
  const fail = (why: string) => new Error(`strconv.ParseUint: parsing ${JSON.stringify(text)}: ${why}`);
  if (text === '') throw fail('invalid syntax');
  let base = 10;
  let digits = text;
  let prefixed = false;
  if (text[0] === '0') {
    const p = text[1]?.toLowerCase();
    if (text.length >= 3 && (p === 'b' || p === 'o' || p === 'x')) {
      base = p === 'b' ? 2 : p === 'o' ? 8 : 16;
      digits = text.slice(2);
      prefixed = true;
    } else {
      base = 8;
      digits = text.slice(1);
    }
  }
  let value = 0;
  for (const c of digits.toLowerCase()) {
    if (c === '_') continue;
    const d = c >= '0' && c <= '9' ? c.charCodeAt(0) - 48 : c >= 'a' && c <= 'z' ? c.charCodeAt(0) - 87 : 99;
    if (d >= base) throw fail('invalid syntax');
    value = value * base + d;
    if (value > MAX_UINT32) throw fail('value out of range');
  }
  // Underscores only between digits, or between a base prefix and a digit.
  if (text.includes('_') && !(prefixed ? /^(_?[0-9a-z])+$/i : /^[0-9a-z](_?[0-9a-z])*$/i).test(prefixed ? digits : text)) {
    throw fail('invalid syntax');
  }
  return value;
}

/** `container-id:host-id:size`, as ctr parses --uidmap and --gidmap. */
export function parseIDMapping(text: string): IDMapping {
  const parts = text.split(':');
  if (parts.length !== 3) throw new Error('user namespace mappings require the format `container-id:host-id:size`');
  const field = (value: string, what: string) => {
    try {
      return parseGoUint32(value);
    } catch (err) {
      throw new Error(`invalid ${what} for user namespace remapping: ${(err as Error).message}`);
    }
  };
  return { containerID: field(parts[0]!, 'container id'), hostID: field(parts[1]!, 'host id'), size: field(parts[2]!, 'size') };
}

/**
 * Adds `uid`/`gid` to the owner of every file under `root`, `root` included, without
 * following symlinks (a link's own owner changes, never its target's).
 */
export async function shiftOwnership(root: string, uid: number, gid: number): Promise<void> {
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path);
    await lchown(path, (st.uid + uid) >>> 0, (st.gid + gid) >>> 0);
    if (!st.isDirectory()) return;
    for (const name of (await readdir(path)).sort()) await visit(join(path, name));
  };
  await visit(root);
}

interface SnapshotCalls {
  stat(req: { snapshotter: string; key: string }): Promise<unknown>;
  prepare(req: { snapshotter: string; key: string; parent: string }): Promise<{ mounts: { type: string; source: string; options: string[] }[] }>;
  commit(req: { snapshotter: string; name: string; key: string }): Promise<unknown>;
  remove(req: { snapshotter: string; key: string }): Promise<unknown>;
}

/**
 * Prepares the container's snapshot `key` on top of the image's layers (`chainId`) with file
 * ownership shifted by the host IDs, as containerd's WithRemappedSnapshot: the shifted copy is
 * committed as `<chainId>-<uid>-<gid>` on first use. `mountTemp` mounts a snapshot's mounts
 * somewhere for the walk.
 */
export async function prepareRemappedSnapshot(
  snapshots: SnapshotCalls,
  snapshotter: string,
  key: string,
  chainId: string,
  uid: number,
  gid: number,
  mountTemp: (mounts: { type: string; source: string; options: string[] }[], fn: (root: string) => Promise<void>) => Promise<void>,
): Promise<{ type: string; source: string; options: string[] }[]> {
  const usernsId = `${chainId}-${uid}-${gid}`;
  const exists = await snapshots.stat({ snapshotter, key: usernsId }).then(() => true, (err) => {
    if (isNotFound(err)) return false;
    throw err;
  });
  if (!exists) {
    const work = `${usernsId}-remap`;
    const { mounts } = await snapshots.prepare({ snapshotter, key: work, parent: chainId });
    try {
      await mountTemp(mounts, (root) => shiftOwnership(root, uid, gid));
    } catch (err) {
      await snapshots.remove({ snapshotter, key: work }).catch(() => undefined);
      throw err;
    }
    await snapshots.commit({ snapshotter, name: usernsId, key: work });
  }
  return (await snapshots.prepare({ snapshotter, key, parent: usernsId })).mounts;
}
