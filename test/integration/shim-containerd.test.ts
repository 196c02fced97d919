/**
 * containerd-shim-berth-v2 under the REAL containerd 1.6 (Debian's): a private containerd
 * (temp root/state/socket, CRI off) with the shim on its PATH, a busybox image built here from
 * /usr/bin/busybox and imported with `ctr images import`, then `ctr run/exec/pause/kill/rm`
 * with `--runtime io.containerd.berth.v2`. Needs `npm run build` first, root, runc,
 * containerd, ctr, busybox and script(1); a missing piece fails the test.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, closeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { create as createTar } from 'tar';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const SHIM_LAUNCHER = join(REPO, 'bin', 'containerd-shim-berth-v2.js');
const RUNTIME = 'io.containerd.berth.v2';
const IMAGE = 'docker.io/library/berth-shim-busybox:latest';
const APPLETS = ['sh', 'echo', 'sleep', 'tty', 'cat', 'true', 'false', 'ls', 'ps', 'id', 'env', 'wc', 'head'];
const NAMESPACE = `shimtest-${process.pid}`;
const CONTAINER_IDS = ['c1', 'c1x', 'c2', 'c3', 'c4', 'c5', 'oom1'];

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    if (options.input !== undefined) child.stdin!.end(options.input);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** An OCI image archive (layout tarball) with one layer: /bin/busybox plus applet symlinks. */
async function buildBusyboxImage(dir: string): Promise<string> {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/usr/bin/busybox', join(rootfs, 'bin', 'busybox'));
  for (const applet of APPLETS) symlinkSync('busybox', join(rootfs, 'bin', applet));
  const layerPath = join(dir, 'layer.tar');
  await createTar({ cwd: rootfs, file: layerPath, portable: true }, ['bin']);

  const layout = join(dir, 'layout');
  const blobs = join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const addBlob = (data: Buffer) => {
    const digest = sha256(data);
    writeFileSync(join(blobs, digest), data);
    return { digest: `sha256:${digest}`, size: data.length };
  };
  const layer = addBlob(readFileSync(layerPath));
  const config = addBlob(Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/bin'], Cmd: ['sh'] },
    rootfs: { type: 'layers', diff_ids: [layer.digest] },
  })));
  const manifest = addBlob(Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
  })));
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      ...manifest,
      annotations: { 'io.containerd.image.name': IMAGE, 'org.opencontainers.image.ref.name': 'latest' },
    }],
  }));
  const archive = join(dir, 'image.tar');
  await createTar({ cwd: layout, file: archive, portable: true }, ['oci-layout', 'index.json', 'blobs']);
  return archive;
}

/** Pids of processes whose command line contains `needle`. */
function pidsWithArg(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmdline.includes(needle)) pids.push(Number(entry));
    } catch { /* gone */ }
  }
  return pids;
}

function statusField(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

describe('containerd-shim-berth-v2 with containerd 1.6', { timeout: 300_000 }, () => {
  let dir: string;
  let address: string;
  let containerd: ChildProcess | undefined;
  let logPath: string;
  const env = { ...process.env };

  const ctr = (args: string[], opts: { timeoutMs?: number; input?: string } = {}) =>
    run('ctr', ['-a', address, '-n', NAMESPACE, ...args], { ...opts, env });
  const daemonLog = () => (existsSync(logPath) ? readFileSync(logPath, 'utf8').split('\n').slice(-40).join('\n') : '');
  const ok = async (args: string[], opts: { timeoutMs?: number; input?: string } = {}) => {
    const r = await ctr(args, opts);
    assert.equal(r.code, 0, `ctr ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}\n--- containerd log ---\n${daemonLog()}`);
    return r;
  };
  const taskStatus = async (id: string): Promise<string | undefined> => {
    const { stdout } = await ok(['tasks', 'ls']);
    const line = stdout.split('\n').find((l) => l.split(/\s+/)[0] === id);
    return line?.trim().split(/\s+/)[2];
  };
  const waitStatus = async (id: string, want: string) => {
    const deadline = Date.now() + 10_000;
    let status: string | undefined;
    while (Date.now() < deadline) {
      status = await taskStatus(id);
      if (status === want) return;
      await sleep(100);
    }
    assert.fail(`task ${id} is ${status}, expected ${want}`);
  };

  before(async () => {
    assert.ok(existsSync(join(REPO, 'dist', 'containerd-shim-berth-v2.js')), 'dist/containerd-shim-berth-v2.js missing: run `npm run build` first');
    assert.equal(process.getuid?.(), 0, 'the shim test needs root (mounts, runc)');
    dir = mkdtempSync(join(tmpdir(), 'berth-shim-'));
    address = join(dir, 'containerd.sock');
    logPath = join(dir, 'containerd.log');
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    symlinkSync(SHIM_LAUNCHER, join(bin, 'containerd-shim-berth-v2'));
    env.PATH = `${bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`;
    const config = join(dir, 'config.toml');
    writeFileSync(config, [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${address}"`,
      '[ttrpc]',
      `  address = "${address}.ttrpc"`,
      '[debug]',
      '  level = "debug"',
      '',
    ].join('\n'));
    const log = openSync(logPath, 'a');
    containerd = spawn('containerd', ['--config', config], { stdio: ['ignore', log, log], env, detached: true });
    closeSync(log);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await run('ctr', ['-a', address, 'version'], { timeoutMs: 5_000 }).catch(() => undefined);
      if (r?.code === 0) break;
      if (Date.now() > deadline || containerd.exitCode !== null) assert.fail(`containerd did not start:\n${daemonLog()}`);
      await sleep(100);
    }
    const archive = await buildBusyboxImage(join(dir, 'image'));
    await ok(['images', 'import', archive], { timeoutMs: 60_000 });
  });

  after(async () => {
    if (!dir) return;
    if (address && containerd) {
      // Tasks left by a failed test: kill and remove them through containerd first.
      const tasks = await ctr(['tasks', 'ls', '-q']).catch(() => undefined);
      for (const id of tasks?.stdout.split('\n').filter(Boolean) ?? []) {
        await ctr(['tasks', 'kill', '-s', 'SIGKILL', id]).catch(() => undefined);
        await sleep(200);
        await ctr(['tasks', 'rm', '-f', id]).catch(() => undefined);
      }
      const containers = await ctr(['containers', 'ls', '-q']).catch(() => undefined);
      for (const id of containers?.stdout.split('\n').filter(Boolean) ?? []) await ctr(['containers', 'rm', id]).catch(() => undefined);
    }
    // Our shims (they carry the daemon address) and the daemon itself, by pid.
    for (const pid of pidsWithArg(`-address ${address}`)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    if (containerd && containerd.exitCode === null) {
      const exited = new Promise((resolve) => containerd!.once('exit', resolve));
      containerd.kill('SIGTERM');
      const timer = setTimeout(() => containerd!.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    // Sockets of shims that had to be killed above.
    for (const id of CONTAINER_IDS) rmSync(`/run/containerd/s/${sha256(`${address}/${NAMESPACE}/${id}`)}`, { force: true });
    // Mounts below the temp dir (rootfs overlays), innermost first.
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
      .map((l) => l.split(' ')[4] ?? '')
      .filter((p) => p.startsWith(dir))
      .reverse();
    for (const m of mounts) await run('umount', ['-l', m]).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    rmSync(join('/run/containerd/runc', NAMESPACE), { recursive: true, force: true });
  });

  it('runs a container to completion: ctr run --rm … echo hello', async () => {
    const r = await ok(['run', '--runtime', RUNTIME, '--rm', IMAGE, 'c1', 'echo', 'hello']);
    assert.equal(r.stdout, 'hello\n');
  });

  it('propagates the exit code and keeps stdout and stderr apart', async () => {
    const r = await ctr(['run', '--runtime', RUNTIME, '--rm', IMAGE, 'c1x', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout, 'out\n');
    assert.match(r.stderr, /^err$/m);
  });

  it('serves a detached task: ls, exec, ps, metrics, pause/resume, kill, rm', async () => {
    await ok(['run', '-d', '--runtime', RUNTIME, IMAGE, 'c2', 'sleep', '1000']);
    assert.equal(await taskStatus('c2'), 'RUNNING');

    const exec = await ok(['tasks', 'exec', '--exec-id', 'e1', 'c2', 'echo', 'in-exec']);
    assert.equal(exec.stdout, 'in-exec\n');
    const failing = await ctr(['tasks', 'exec', '--exec-id', 'e2', 'c2', 'sh', '-c', 'exit 3']);
    assert.equal(failing.code, 3);
    // stdin reaches the process, and so does EOF once ctr's input ends (CloseIO).
    const counted = await ok(['tasks', 'exec', '--exec-id', 'e3', 'c2', 'wc', '-c'], { input: 'twelve bytes' });
    assert.equal(counted.stdout.trim(), '12');

    const ps = await ok(['tasks', 'ps', 'c2']);
    const taskPid = Number((await ok(['tasks', 'ls'])).stdout.split('\n').find((l) => l.startsWith('c2'))!.trim().split(/\s+/)[1]);
    assert.match(ps.stdout, new RegExp(`^${taskPid}\\s`, 'm'));

    const metrics = await ok(['tasks', 'metrics', 'c2']);
    assert.match(metrics.stdout, /pids\.current\s+1/);
    assert.match(metrics.stdout, /memory\.usage_in_bytes\s+\d+/);

    // The idle shim's footprint (reported, and bounded generously).
    const shimPid = Number(readFileSync(`/proc/${taskPid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
    const cmdline = readFileSync(`/proc/${shimPid}/cmdline`, 'utf8');
    assert.match(cmdline, /containerd-shim-berth-v2/);
    await sleep(1_000);
    const rss = statusField(shimPid, 'VmRSS');
    const anon = statusField(shimPid, 'RssAnon');
    console.log(`# idle shim pid ${shimPid}: VmRSS ${rss} kB, RssAnon ${anon} kB`);
    assert.ok(rss < 120 * 1024, `idle shim RSS ${rss} kB`);

    await ok(['tasks', 'pause', 'c2']);
    assert.equal(await taskStatus('c2'), 'PAUSED');
    await ok(['tasks', 'resume', 'c2']);
    assert.equal(await taskStatus('c2'), 'RUNNING');

    await ok(['tasks', 'kill', '-s', 'SIGKILL', 'c2']);
    await waitStatus('c2', 'STOPPED');
    await ok(['tasks', 'rm', 'c2']);
    await ok(['containers', 'rm', 'c2']);
    assert.equal(await taskStatus('c2'), undefined);

    // With its last container gone the shim exits and takes its socket along.
    const socket = `/run/containerd/s/${sha256(`${address}/${NAMESPACE}/c2`)}`;
    const deadline = Date.now() + 10_000;
    while ((existsSync(`/proc/${shimPid}`) || existsSync(socket)) && Date.now() < deadline) await sleep(100);
    assert.ok(!existsSync(`/proc/${shimPid}`), 'shim still running after rm');
    assert.ok(!existsSync(socket), `shim socket ${socket} left behind`);
  });

  it('publishes task events in order: create, start, exit, delete', async () => {
    const events = spawn('ctr', ['-a', address, 'events'], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let text = '';
    events.stdout!.on('data', (d: Buffer) => (text += d.toString()));
    try {
      await sleep(500);
      await ok(['run', '--runtime', RUNTIME, '--rm', IMAGE, 'c4', 'true']);
      const deadline = Date.now() + 10_000;
      while (!/\/tasks\/delete .*"c4"/.test(text) && Date.now() < deadline) await sleep(100);
    } finally {
      events.kill('SIGTERM');
    }
    const topics = text.split('\n')
      .filter((l) => l.includes(` ${NAMESPACE} /tasks/`) && l.includes('"container_id":"c4"'))
      .map((l) => /(\/tasks\/[a-z-]+)/.exec(l)![1]);
    assert.deepEqual(topics, ['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete'], text);
  });

  it('reports an OOM kill before the exit', async () => {
    const events = spawn('ctr', ['-a', address, 'events'], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let text = '';
    events.stdout!.on('data', (d: Buffer) => (text += d.toString()));
    try {
      await sleep(500);
      // The shell doubles a string until the 20 MB memory limit kills it.
      const r = await ctr(['run', '--runtime', RUNTIME, '--rm', '--memory-limit', '20000000', IMAGE, 'oom1', 'sh', '-c', 'a=x; while true; do a="$a$a"; done']);
      assert.equal(r.code, 137, r.stderr);
      const deadline = Date.now() + 10_000;
      while (!/\/tasks\/delete .*"oom1"/.test(text) && Date.now() < deadline) await sleep(100);
    } finally {
      events.kill('SIGTERM');
    }
    const topics = text.split('\n').filter((l) => l.includes('"container_id":"oom1"')).map((l) => /(\/tasks\/[a-z-]+)/.exec(l)![1]);
    assert.deepEqual(topics, ['/tasks/create', '/tasks/start', '/tasks/oom', '/tasks/exit', '/tasks/delete'], text);
  });

  it('allocates a terminal: ctr run -t', async () => {
    const command = `ctr -a ${address} -n ${NAMESPACE} run -t --runtime ${RUNTIME} --rm ${IMAGE} c3 sh -c 'tty; echo ok'`;
    const r = await run('script', ['-qec', command, '/dev/null'], { env });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}\n${daemonLog()}`);
    const out = r.stdout.replace(/\0/g, '');
    assert.match(out, /\/dev\/pts\/\d+\r?\r?\n/);
    assert.match(out, /^ok\r?\r?$/m);
  });

  it('allocates a terminal for an exec: ctr tasks exec -t', async () => {
    await ok(['run', '-d', '--runtime', RUNTIME, IMAGE, 'c5', 'sleep', '1000']);
    const command = `ctr -a ${address} -n ${NAMESPACE} tasks exec -t --exec-id t1 c5 sh -c 'tty; echo exec-ok'`;
    const r = await run('script', ['-qec', command, '/dev/null'], { env });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /\/dev\/pts\/\d+/);
    assert.match(r.stdout, /exec-ok/);
    await ok(['tasks', 'kill', '-s', 'SIGKILL', 'c5']);
    await waitStatus('c5', 'STOPPED');
    await ok(['tasks', 'rm', 'c5']);
    await ok(['containers', 'rm', 'c5']);
  });

  it('leaves no rootfs mounts behind', () => {
    const leftovers = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(dir) && l.includes('rootfs'));
    assert.deepEqual(leftovers, []);
    assert.ok(statSync(dir).isDirectory());
  });
});
