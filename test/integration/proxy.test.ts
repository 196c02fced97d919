// Proxy plugins both ways, with real processes:
//  1. berthd as the client: a `[proxy_plugins.remotesnap]` snapshotter served by
//     `berth snapshotter serve --snapshotter overlayfs` on a second root. The real ctr drives
//     prepare/mounts/commit/view/rm and import + run through it; introspection lists it; the
//     namespace reaches the peer; a killed peer gives an error naming the proxy, and the next
//     call after a restart works. A proxy named like a builtin stops berthd at startup.
//  2. The real containerd as the client of `berth snapshotter serve`: import and run busybox
//     with `--snapshotter berthsnap`.
//  3. A content proxy: berthd with its builtin content store disabled, storing blobs in a
//     content gRPC server in this process.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BERTH, BERTHD, QUIET_GC, berth, ctr, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { BUSYBOX, makeBusyboxArchive } from '../helpers/fixtures.js';
import type { ContentStore } from '../../core/content/content.js';
import { silentLogger } from '../../core/log/logger.js';
import type { InitContext } from '../../core/plugin/types.js';
import { isGrpcPlugin } from '../../core/server/grpc-adapter.js';
import { listenGrpc, type RunningServer } from '../../core/server/grpc-server.js';
import { LocalContentStore } from '../../plugins/content/local/store.js';
import { startRegistry } from './client/remotes/helpers.js';
import { btrfsFixture } from './plugins/snapshotter/btrfs-fixture.js';
import { contentGrpcPlugin } from '../../plugins/grpc/content/plugin.js';

const esc = (s: string) => s.replace(/[/.\-[\]()*+?^$|{}\\]/g, '\\$&');

let work: string;
let busyboxArchive: string;

before(() => {
  work = mkdtempSync(join(tmpdir(), 'berth-proxy-it-'));
  busyboxArchive = join(work, 'busybox.oci.tar');
  makeBusyboxArchive(busyboxArchive);
});
after(() => rmSync(work, { recursive: true, force: true }));

/** A running `berth snapshotter serve`. */
interface Serve {
  address: string;
  root: string;
  child: ChildProcess;
  log(): string;
  kill(signal: NodeJS.Signals): Promise<void>;
}

async function startServe(address: string, root: string, snapshotter = 'overlayfs'): Promise<Serve> {
  const child = spawn(process.execPath, [BERTH, 'snapshotter', 'serve', '--snapshotter', snapshotter, '--address', address, '--root', root, '--log-level', 'debug'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr!.on('data', (b) => (log += b));
  const deadline = Date.now() + 15_000;
  while (!/serving snapshotter/.test(log) || !existsSync(address)) {
    if (child.exitCode !== null) throw new Error(`berth snapshotter serve exited with ${child.exitCode}:\n${log}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`berth snapshotter serve did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    address, root, child,
    log: () => log,
    kill: async (signal) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
    },
  };
}

const must = async (p: Promise<{ code: number; stdout: string; stderr: string }>, what: string) => {
  const r = await p;
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  return r.stdout;
};

describe('berthd with a proxy snapshotter served by `berth snapshotter serve`', () => {
  let d: TestDaemon;
  let serve: Serve;
  const sock = () => join(work, 'remotesnap.sock');
  const peerRoot = () => join(work, 'peer-root');
  const snap = (args: string[], ns = 'proxyns') => ctr(d.address, ['snapshots', '--snapshotter', 'remotesnap', ...args], { namespace: ns });

  before(async () => {
    serve = await startServe(sock(), peerRoot());
    d = await startDaemon({ extraConfig: `[proxy_plugins.remotesnap]\n  type = "snapshot"\n  address = "${sock()}"` });
  });
  after(async () => {
    await d?.dispose();
    await serve?.kill('SIGTERM');
  });

  it('is listed by introspection, ok, with its address', async () => {
    const ls = await must(berth(d.address, ['plugins', 'ls', 'type==io.containerd.snapshotter.v1']), 'berth plugins ls');
    assert.match(ls, /io\.containerd\.snapshotter\.v1\s+remotesnap\s+-\s+ok/);
    for (const run of [berth, ctr]) {
      const detail = await must(run(d.address, ['plugins', 'ls', '-d', 'id==remotesnap']), 'plugins ls -d');
      assert.match(detail, /Type:\s+io\.containerd\.snapshotter\.v1/);
      assert.match(detail, new RegExp(`address\\s+${esc(sock())}`));
    }
  });

  it('serves prepare, mounts, commit, view, ls and rm through the peer', async () => {
    await must(snap(['prepare', 'k1', '']), 'prepare');
    const mounts = await must(snap(['mounts', '/mnt', 'k1']), 'mounts');
    // The mount comes from the peer's overlayfs root, not berthd's.
    assert.match(mounts, new RegExp(`^mount -t bind ${esc(peerRoot())}/io\\.containerd\\.snapshotter\\.v1\\.overlayfs/snapshots/\\d+/fs /mnt -o rw,rbind$`, 'm'));
    await must(snap(['commit', 'c1', 'k1']), 'commit');
    await must(snap(['view', 'v1', 'c1']), 'view');
    await must(snap(['prepare', 'k2', 'c1']), 'prepare on a parent');
    const overlay = await must(snap(['mounts', '/mnt', 'k2']), 'overlay mounts');
    assert.match(overlay, /^mount -t overlay overlay \/mnt -o .*lowerdir=/m);
    const ls = await must(snap(['ls']), 'ls');
    assert.match(ls, /^c1\s+Committed/m);
    assert.match(ls, /^v1\s+c1\s+View/m);
    assert.match(ls, /^k2\s+c1\s+Active/m);
    const info = JSON.parse(await must(snap(['info', 'c1']), 'info')) as { Kind: string; Name: string };
    assert.deepEqual([info.Kind, info.Name], ['Committed', 'c1']);
    await must(snap(['rm', 'v1', 'k2']), 'rm');
    assert.doesNotMatch(await must(snap(['ls']), 'ls'), /v1|k2/);
    // Another namespace sees none of it.
    assert.doesNotMatch(await must(snap(['ls'], 'other'), 'ls other'), /c1/);
  });

  it('sends the caller\'s namespace to the peer with every call', () => {
    const lines = serve.log().split('\n').filter((l) => /msg="request" method=\/containerd\.services\.snapshots\.v1\.Snapshots\/(Prepare|Commit|View)/.test(l));
    assert.ok(lines.length >= 4, serve.log());
    for (const l of lines) assert.match(l, /namespace=proxyns/);
  });

  it('imports and runs busybox on the proxy snapshotter', async () => {
    const out = await must(ctr(d.address, ['images', 'import', '--snapshotter', 'remotesnap', busyboxArchive]), 'import');
    assert.match(out, /unpacking docker\.io\/library\/busybox:latest .*done/);
    const chain = await must(snap(['ls'], 'default'), 'ls');
    assert.match(chain, /^sha256:\w{64}\s+Committed/m, 'layers unpacked into the peer');
    const run = await must(ctr(d.address, ['run', '--rm', '--snapshotter', 'remotesnap', BUSYBOX, 'proxy-run', 'echo', 'hi from the proxy']), 'ctr run');
    assert.equal(run, 'hi from the proxy\n');
  });

  it('pulls from a registry into the proxy snapshotter and runs it', async () => {
    const reg = await startRegistry();
    try {
      const ref = `${reg.host}/berthtest/busybox:proxy`;
      await must(ctr(d.address, ['images', 'tag', BUSYBOX, ref]), 'tag');
      await must(ctr(d.address, ['images', 'push', '--plain-http', ref]), 'push');
      const pulled = await must(ctr(d.address, ['images', 'pull', '--plain-http', '--snapshotter', 'remotesnap', ref], { namespace: 'pullns' }), 'pull');
      assert.match(pulled, /unpacking \S+ sha256:\w{64}\.\.\.\s*\ndone/);
      const out = await must(ctr(d.address, ['run', '--rm', '--snapshotter', 'remotesnap', ref, 'proxy-pull-run', 'echo', 'pulled'], { namespace: 'pullns' }), 'run');
      assert.equal(out, 'pulled\n');
      assert.ok(serve.log().includes('namespace=pullns'), 'the pull unpacked through the peer');
    } finally {
      await reg.stop();
    }
  });

  it('names the proxy when the peer is down, and works again once it is back', async () => {
    await serve.kill('SIGKILL');
    for (const run of [ctr, berth]) {
      const r = await run(d.address, ['snapshots', '--snapshotter', 'remotesnap', 'prepare', 'k3', 'c1'], { namespace: 'proxyns' });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`proxy snapshotter "remotesnap" at ${esc(sock())} is not available`));
    }
    serve = await startServe(sock(), peerRoot());
    await must(snap(['prepare', 'k3', 'c1']), 'prepare after the peer came back');
    assert.match(await must(snap(['ls']), 'ls'), /^k3\s+c1\s+Active/m);
    await must(snap(['rm', 'k3']), 'rm');
  });
});

describe('proxy plugin config errors', () => {
  it('refuses a proxy named like a builtin of its type at startup', async () => {
    await assert.rejects(
      startDaemon({ extraConfig: '[proxy_plugins.overlayfs]\n  type = "snapshot"\n  address = "/run/none.sock"' }),
      /proxy_plugins\.overlayfs: io\.containerd\.snapshotter\.v1\.overlayfs is already a built-in plugin/,
    );
    await assert.rejects(
      startDaemon({ extraConfig: '[proxy_plugins.x]\n  type = "diff"\n  address = "/run/none.sock"' }),
      /proxy_plugins\.x\.type: expected "snapshot" or "content", got "diff"/,
    );
  });
});

describe('berth snapshotter serve', () => {
  it('rejects unknown snapshotters and a missing --address', async () => {
    const bad = await berth(join(work, 'unused.sock'), ['snapshotter', 'serve', '--snapshotter', 'zfs', '--address', join(work, 'x.sock')]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unknown snapshotter "zfs": berth has btrfs, native, overlayfs/);
    const noAddr = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const c = spawn(process.execPath, [BERTH, 'snapshotter', 'serve', '--snapshotter', 'native'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      c.stderr!.on('data', (b) => (stderr += b));
      c.on('exit', (code) => resolve({ code, stderr }));
    });
    assert.equal(noAddr.code, 1);
    assert.match(noAddr.stderr, /--address SOCKET is required/);
  });

  it('serves native too, takes its config section from --config, and removes its socket on SIGTERM', async () => {
    const address = join(work, 'native.sock');
    const cfg = join(work, 'serve.toml');
    const nativeRoot = join(work, 'native-data');
    writeFileSync(cfg, `version = 2\n[plugins."io.containerd.snapshotter.v1.native"]\n  root_path = "${nativeRoot}"\n[plugins."io.containerd.gc.v1.scheduler"]\n  deletion_threshold = 1\n`);
    const child = spawn(process.execPath, [BERTH, 'snapshotter', 'serve', '--snapshotter', 'native', '--address', address, '--root', join(work, 'native-root'), '--config', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr!.on('data', (b) => (log += b));
    try {
      while (!/serving snapshotter/.test(log)) {
        assert.equal(child.exitCode, null, log);
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.doesNotMatch(log, /no such plugin/, 'sections of other plugins are not its business');
      const d = await startDaemon({ extraConfig: `[proxy_plugins.nat]\n  type = "snapshot"\n  address = "${address}"` });
      try {
        await must(ctr(d.address, ['snapshots', '--snapshotter', 'nat', 'prepare', 'a', '']), 'prepare');
        const m = await must(ctr(d.address, ['snapshots', '--snapshotter', 'nat', 'mounts', '/mnt', 'a']), 'mounts');
        assert.match(m, new RegExp(`^mount -t bind ${esc(nativeRoot)}/snapshots/\\d+ /mnt -o rbind,rw$`, 'm'));
      } finally {
        await d.dispose();
      }
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const code = await exited;
      assert.equal(code, 0);
    }
    assert.ok(!existsSync(address), 'socket removed');
    assert.match(log, /received SIGTERM, shutting down/);
  });
});

describe('berth snapshotter serve --snapshotter btrfs', () => {
  it('says why when its root is not on btrfs', async () => {
    const r = await berth(join(work, 'unused.sock'), ['snapshotter', 'serve', '--snapshotter', 'btrfs', '--address', join(work, 'btrfs-no.sock'), '--root', join(work, 'not-btrfs')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /snapshotter btrfs did not start: path .* must be a btrfs filesystem to be used with the btrfs snapshotter: skip plugin/);
  });

  it('serves subvolumes from a btrfs filesystem to berthd', async () => {
    const fs = await btrfsFixture();
    let serve: Serve | undefined;
    let d: TestDaemon | undefined;
    try {
      serve = await startServe(join(work, 'btrfs.sock'), join(fs.mountpoint, 'serve-root'), 'btrfs');
      d = await startDaemon({ extraConfig: `[proxy_plugins.remotebtrfs]\n  type = "snapshot"\n  address = "${serve.address}"` });
      const snap = (args: string[]) => must(ctr(d!.address, ['snapshots', '--snapshotter', 'remotebtrfs', ...args]), args.join(' '));
      await snap(['prepare', 'b1', '']);
      assert.match(await snap(['mounts', '/mnt', 'b1']), /^mount -t btrfs \S+ \/mnt -o subvolid=\d+$/m);
      await snap(['commit', 'b1c', 'b1']);
      await snap(['view', 'b1v', 'b1c']);
      assert.match(await snap(['mounts', '/mnt', 'b1v']), /-o subvolid=\d+,ro$/m);
      assert.match(await snap(['ls']), /^b1v\s+b1c\s+View/m);
      await snap(['rm', 'b1v', 'b1c']);
    } finally {
      await d?.dispose();
      await serve?.kill('SIGTERM');
      await fs.dispose();
    }
  });
});

describe('real containerd with `berth snapshotter serve` as its proxy snapshotter', () => {
  let serve: Serve;
  let containerd: ChildProcess | undefined;
  let ctdLog = '';
  const dir = () => join(work, 'containerd');
  const address = () => join(dir(), 'containerd.sock');

  before(async () => {
    if (!existsSync('/usr/bin/containerd')) throw new Error('/usr/bin/containerd missing (apt-get install containerd)');
    serve = await startServe(join(work, 'berthsnap.sock'), join(work, 'ctd-peer-root'));
    writeFileSync(join(work, 'containerd.toml'), [
      'version = 2',
      `root = "${dir()}/root"`,
      `state = "${dir()}/state"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${address()}"`,
      '[ttrpc]',
      `  address = "${address()}.ttrpc"`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = "${dir()}/opt"`,
      '[proxy_plugins.berthsnap]',
      '  type = "snapshot"',
      `  address = "${serve.address}"`,
    ].join('\n'));
    containerd = spawn('/usr/bin/containerd', ['--config', join(work, 'containerd.toml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    containerd.stderr!.on('data', (b) => (ctdLog += b));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (containerd.exitCode !== null) throw new Error(`containerd exited:\n${ctdLog}`);
      if (existsSync(address()) && (await ctr(address(), ['version'])).code === 0) break;
      if (Date.now() > deadline) throw new Error(`containerd did not start:\n${ctdLog}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  after(async () => {
    if (containerd && containerd.exitCode === null) {
      const exited = new Promise((r) => containerd!.once('exit', r));
      containerd.kill('SIGTERM');
      const t = setTimeout(() => containerd!.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    await serve?.kill('SIGTERM');
  });

  it('lists berthsnap and runs busybox on it', async () => {
    const ls = await must(ctr(address(), ['plugins', 'ls', 'id==berthsnap']), 'plugins ls');
    assert.match(ls, /io\.containerd\.snapshotter\.v1\s+berthsnap\s+-\s+ok/);
    const imported = await must(ctr(address(), ['images', 'import', '--snapshotter', 'berthsnap', busyboxArchive]), 'ctr import');
    assert.match(imported, /unpacking docker\.io\/library\/busybox:latest .*done/);
    const out = await must(ctr(address(), ['run', '--snapshotter', 'berthsnap', '--rm', BUSYBOX, 'ctd-proxy-run', 'echo', 'hi']), 'ctr run');
    assert.equal(out, 'hi\n');
    // The layers live in berth's overlayfs root; containerd's own overlayfs has none.
    const ours = join(serve.root, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
    assert.ok(readdirSync(ours).length >= 1);
    const theirs = join(dir(), 'root', 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
    assert.equal(existsSync(theirs) ? readdirSync(theirs).length : 0, 0);
    // Debian's containerd does not forward the namespace; berth's server copes with none.
    assert.match(serve.log(), /Snapshots\/Prepare/);
  });
});

/** Serves `store` with berth's own Content gRPC adapter on `address`. */
async function serveContent(store: ContentStore, address: string): Promise<RunningServer> {
  const ctx = { log: silentLogger, service: async () => store } as unknown as InitContext<Record<string, never>>;
  const plugin = await contentGrpcPlugin.init(ctx);
  assert.ok(isGrpcPlugin(plugin));
  return listenGrpc({ address, uid: 0, gid: 0, maxRecvMessageSize: 16 << 20, maxSendMessageSize: 16 << 20, services: plugin.grpcServices(), log: silentLogger });
}

describe('berthd with a proxy content store (builtin content disabled)', () => {
  let server: RunningServer;
  let child: ChildProcess;
  let log = '';
  const cdir = () => join(work, 'content-proxy');
  const address = () => join(cdir(), 'berth.sock');
  const storeRoot = () => join(cdir(), 'remote-store');

  before(async () => {
    mkdirSync(cdir(), { recursive: true });
    const local = await LocalContentStore.open(storeRoot());
    server = await serveContent(local, join(cdir(), 'content.sock'));
    writeFileSync(join(cdir(), 'config.toml'), [
      'version = 2',
      `root = "${cdir()}/root"`,
      `state = "${cdir()}/state"`,
      'disabled_plugins = ["io.containerd.content.v1.content"]',
      '[grpc]',
      `  address = "${address()}"`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = "${cdir()}/opt"`,
      // ctr's ingest leaves an unreferenced blob: keep periodic collections out of the test.
      QUIET_GC,
      '[proxy_plugins.remotecontent]',
      '  type = "content"',
      `  address = "${join(cdir(), 'content.sock')}"`,
    ].join('\n'));
    child = spawn(process.execPath, [BERTHD, '--config', join(cdir(), 'config.toml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (b) => (log += b));
    const deadline = Date.now() + 15_000;
    while (!/successfully booted/.test(log)) {
      if (child.exitCode !== null) throw new Error(`berthd exited:\n${log}`);
      if (Date.now() > deadline) throw new Error(`berthd did not boot:\n${log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  });

  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await server?.close();
  });

  it('lists the proxy as the only content plugin', async () => {
    const ls = await must(ctr(address(), ['plugins', 'ls', 'type==io.containerd.content.v1']), 'plugins ls');
    assert.match(ls, /io\.containerd\.content\.v1\s+remotecontent\s+-\s+ok/);
    assert.doesNotMatch(ls, /\scontent\s+-\s+ok/);
  });

  it('ingests, reads, lists, labels and deletes blobs kept by the peer', async () => {
    const data = 'blob stored by the content proxy\n';
    await must(ctr(address(), ['content', 'ingest', 'proxy-ref'], { input: data }), 'ingest');
    const digest = `sha256:${(await import('node:crypto')).createHash('sha256').update(data).digest('hex')}`;
    assert.ok(existsSync(join(storeRoot(), 'blobs', 'sha256', digest.slice(7))), 'the blob is in the peer\'s store');
    assert.equal(await must(ctr(address(), ['content', 'get', digest]), 'get'), data);
    assert.match(await must(ctr(address(), ['content', 'ls']), 'ls'), new RegExp(digest));
    await must(ctr(address(), ['content', 'label', digest, 'team=a']), 'label');
    assert.match(await must(ctr(address(), ['content', 'ls']), 'ls'), /team=a/, 'labels live in berthd\'s metadata');
    await must(ctr(address(), ['content', 'rm', digest]), 'rm');
    const gone = await ctr(address(), ['content', 'get', digest]);
    assert.notEqual(gone.code, 0);
  });

  it('imports and runs an image whose blobs live in the peer', async () => {
    await must(ctr(address(), ['images', 'import', busyboxArchive]), 'import');
    const out = await must(ctr(address(), ['run', '--rm', BUSYBOX, 'content-proxy-run', 'echo', 'hi']), 'run');
    assert.equal(out, 'hi\n');
  });
});
