/**
 * Where a shim listens. Like the runc shim: `unix:///run/containerd/s/<hex sha256 of
 * "<daemon grpc address>/<namespace>/<group>">`, the group being the container id unless the
 * spec's annotations put the container into a shim group. The socket directory is fixed (it
 * does not follow the daemon's state dir), exactly as in containerd 1.6.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { posix } from 'node:path';

export const SOCKET_DIR = '/run/containerd/s';

/** Annotations that group containers into one shim, in priority order. */
export const GROUP_ANNOTATIONS = ['io.containerd.runc.v2.group', 'io.kubernetes.cri.sandbox-id'];

export function socketAddress(grpcAddress: string, namespace: string, group: string): string {
  // path.posix.join cleans the result like Go's filepath.Join.
  const digest = createHash('sha256').update(posix.join(grpcAddress, namespace, group)).digest('hex');
  return `unix://${SOCKET_DIR}/${digest}`;
}

/** The shim group of the container whose bundle holds `configPath`: the id unless annotated. */
export function shimGroup(id: string, configPath: string): string {
  const spec = JSON.parse(readFileSync(configPath, 'utf8')) as { annotations?: Record<string, string> };
  for (const key of GROUP_ANNOTATIONS) {
    const value = spec.annotations?.[key];
    if (value !== undefined) return value;
  }
  return id;
}

/** Whether something accepts connections on the unix socket at `path` (a live shim). */
export function canConnect(path: string, timeoutMs = 100): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
