/**
 * The `delete` action: the daemon's cleanup after a shim went away (it also runs after every
 * normal task delete). Force-deletes the container in runc, unmounts the rootfs and prints a
 * marshalled DeleteResponse reporting SIGKILL (137), like the runc shim. Failures of the
 * individual steps are warnings on stderr (the daemon logs them), not errors.
 */
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DeleteResponse } from '../../api/gen/runtime/v2/task/shim.js';
import { isAbstract, socketPath } from '../../api/ttrpc/address.js';
import { messageOf } from '../../core/errdefs/errdefs.js';
import { canConnect } from './address.js';
import type { ShimFlags } from './flags.js';
import type { Logger } from './log.js';
import { readBundleOptions } from './options.js';
import { Runc } from './runc.js';

const SIGKILL_STATUS = 128 + 9;
const INIT_PID_FILE = 'init.pid';

export async function deleteAction(flags: ShimFlags, log: Logger): Promise<Uint8Array> {
  if (!flags.id) throw new Error('shim id cannot be empty');
  // As the runc shim: the bundle of `id` is a sibling of the working directory (usually itself).
  const bundle = flags.bundle || join(dirname(process.cwd()), flags.id);
  const options = readBundleOptions(bundle);
  const runc = new Runc({
    command: options.binaryName,
    root: options.root,
    namespace: flags.namespace,
    bundle,
    systemdCgroup: options.systemdCgroup,
  });
  try {
    await runc.delete(flags.id, true);
  } catch (err) {
    log.warn('failed to remove runc container', { error: messageOf(err) });
  }
  try {
    const { unmountAll } = await import('../../core/mount/mount.js');
    await unmountAll(join(bundle, 'rootfs'));
  } catch (err) {
    log.warn('failed to cleanup rootfs mount', { error: messageOf(err) });
  }
  await removeDeadSocket(bundle, log);
  let pid = 0;
  try {
    pid = Number(readFileSync(join(bundle, INIT_PID_FILE), 'utf8').trim()) || 0;
  } catch (err) {
    log.warn('failed to read init pid file', { error: messageOf(err) });
  }
  return DeleteResponse.encode({ pid, exitStatus: SIGKILL_STATUS, exitedAt: new Date() }).finish();
}

/**
 * A shim that was killed leaves its socket file behind (containerd's shims do too). When the
 * socket recorded in the bundle no longer answers, it is removed; a live shim (e.g. one still
 * serving other containers of its group) keeps it.
 */
async function removeDeadSocket(bundle: string, log: Logger): Promise<void> {
  let address: string;
  try {
    address = readFileSync(join(bundle, 'address'), 'utf8').trim();
  } catch {
    return;
  }
  if (!address || isAbstract(address)) return;
  const path = socketPath(address);
  const alive = await canConnect(path);
  if (alive) return;
  try {
    rmSync(path, { force: true });
  } catch (err) {
    log.warn('failed to remove shim socket', { error: messageOf(err) });
  }
}
