/**
 * A throw-away btrfs filesystem for tests: a sparse image file formatted with mkfs.btrfs and
 * loop-mounted under a temporary directory. btrfs-progs is installed with apt-get when
 * missing; a host that cannot provide it fails the test rather than skipping it.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { mountAll, unmountAll } from '../../../../core/mount/index.js';

async function ensureBtrfsProgs(): Promise<void> {
  const has = async () => (await execa('sh', ['-c', 'command -v mkfs.btrfs && command -v btrfs'], { reject: false })).exitCode === 0;
  if (await has()) return;
  await execa('apt-get', ['update', '-qq'], { env: { DEBIAN_FRONTEND: 'noninteractive' } });
  await execa('apt-get', ['install', '-y', '-qq', 'btrfs-progs'], { env: { DEBIAN_FRONTEND: 'noninteractive' } });
  if (!(await has())) throw new Error('btrfs-progs could not be installed');
}

export interface BtrfsFixture {
  /** The mounted filesystem's root. */
  mountpoint: string;
  dispose(): Promise<void>;
}

export async function btrfsFixture(size = '1G'): Promise<BtrfsFixture> {
  await ensureBtrfsProgs();
  const dir = await mkdtemp(join(tmpdir(), 'berth-btrfs-'));
  const image = join(dir, 'btrfs.img');
  const mountpoint = join(dir, 'mnt');
  await execa('truncate', ['-s', size, image]);
  await execa('mkfs.btrfs', ['-q', '-f', image]);
  await mkdir(mountpoint);
  await mountAll([{ type: 'btrfs', source: image, options: ['loop'] }], mountpoint);
  return {
    mountpoint,
    async dispose() {
      await unmountAll(mountpoint);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
