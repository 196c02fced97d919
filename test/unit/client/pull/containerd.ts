// Starts Debian's real containerd on temp root/state/socket (cri disabled) for side-by-side tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ctr } from '../../../helpers/daemon.js';

export interface Containerd {
  address: string;
  stop(): Promise<void>;
}

export async function startContainerd(): Promise<Containerd> {
  if (!existsSync('/usr/bin/containerd')) throw new Error('/usr/bin/containerd missing (apt-get install containerd)');
  const dir = await fsp.mkdtemp(join(tmpdir(), 'berth-containerd-'));
  const address = join(dir, 'containerd.sock');
  await fsp.writeFile(join(dir, 'config.toml'), [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${address}"`,
    '[ttrpc]',
    `  address = "${address}.ttrpc"`,
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${dir}/opt"`,
  ].join('\n'));
  const child: ChildProcess = spawn('/usr/bin/containerd', ['--config', join(dir, 'config.toml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (b) => (log += b));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`containerd exited: ${log}`);
    if (existsSync(address) && (await ctr(address, ['version'])).code === 0) break;
    if (Date.now() > deadline) throw new Error(`containerd did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    address,
    stop: async () => {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
      for (let i = 0; i < 5; i++) {
        try {
          await fsp.rm(dir, { recursive: true, force: true });
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    },
  };
}

