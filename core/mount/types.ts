/**
 * The Mount value shared by snapshotters, the rootfs code and the CLI. Kept free of imports so
 * that rendering or passing mounts around never loads the syscall machinery.
 */
import { join, posix } from 'node:path';

/** containerd's Mount (types.Mount on the wire). */
export interface Mount {
  /** Filesystem type: "overlay", "bind", "tmpfs", "btrfs", ... */
  type: string;
  /** Device, directory or pseudo-name ("overlay", "tmpfs") to mount. */
  source: string;
  /** Optional mountpoint below the target root (containerd 2.x); parents must be mounted first. */
  target?: string;
  /** fstab-style options; see parseMountOptions. */
  options: string[];
}

/** Where `m` lands under `root`. Lexical only: ".." cannot climb out, symlinks are not resolved. */
export function mountpointOf(m: Mount, root: string): string {
  return m.target ? join(root, posix.normalize('/' + m.target)) : root;
}
