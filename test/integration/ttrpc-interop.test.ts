/**
 * Interop with the real containerd 1.6: our ttrpc client forwards an event to containerd's
 * ".ttrpc" socket (the way a shim publishes task events) and `ctr events` must print it.
 * containerd and ctr are required: CI installs them, so their absence is a failure.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { ContainerCreate } from '../../api/gen/events/container.js';
import { EventsService } from '../../api/gen/services/ttrpc/events/v1/events.js';
import { TtrpcClient, typedClient } from '../../api/ttrpc/index.js';

const STARTUP_TIMEOUT_MS = 15_000;

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((entry) => {
    try {
      accessSync(join(entry || '.', command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

async function waitFor(what: string, ready: () => boolean, timeoutMs: number, diagnostics: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}\n${diagnostics()}`);
    await sleep(50);
  }
}

/** Stops a child we started: SIGTERM, then SIGKILL if it lingers. */
async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}

const REQUIRED_COMMANDS = ['containerd', 'ctr'];
const missingMessage = (command: string) =>
  `'${command}' is not on PATH: the ttrpc interop test needs Debian's containerd 1.6 (apt-get install containerd)`;

// Its own test so that a machine without containerd shows up as a failed test, not only a failed hook.
it('has containerd and ctr installed', () => {
  for (const command of REQUIRED_COMMANDS) assert.ok(onPath(command), missingMessage(command));
});

describe('ttrpc interop with containerd 1.6', () => {
  let dir: string;
  let containerd: ChildProcess | undefined;
  let events: ChildProcess | undefined;
  let eventsOutput = '';
  // Whatever ends this process, the daemon it started must not outlive it.
  const killOnExit = () => {
    containerd?.kill('SIGKILL');
    events?.kill('SIGKILL');
  };
  const killOnSignal = (signal: NodeJS.Signals) => {
    killOnExit();
    if (dir) rmSync(dir, { recursive: true, force: true });
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };

  before(async () => {
    for (const command of REQUIRED_COMMANDS) assert.ok(onPath(command), missingMessage(command));
    dir = mkdtempSync(join(tmpdir(), 'berth-ttrpc-interop-'));
    writeFileSync(
      join(dir, 'config.toml'),
      [
        'version = 2',
        `root = ${JSON.stringify(join(dir, 'root'))}`,
        `state = ${JSON.stringify(join(dir, 'state'))}`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = ${JSON.stringify(join(dir, 'c.sock'))}`,
        '',
      ].join('\n'),
    );
    process.once('exit', killOnExit);
    process.once('SIGINT', killOnSignal);
    process.once('SIGTERM', killOnSignal);
    const logPath = join(dir, 'containerd.log');
    const log = (): string => (existsSync(logPath) ? readFileSync(logPath, 'utf8').slice(-4000) : '(no log)');
    containerd = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    containerd.stderr!.on('data', (chunk: Buffer) => writeFileSync(logPath, chunk, { flag: 'a' }));
    await waitFor('containerd to serve its ttrpc socket', () => existsSync(join(dir, 'c.sock.ttrpc')) && existsSync(join(dir, 'c.sock')), STARTUP_TIMEOUT_MS, log);

    events = spawn('ctr', ['-a', join(dir, 'c.sock'), 'events'], { stdio: ['ignore', 'pipe', 'pipe'] });
    events.stdout!.on('data', (chunk: Buffer) => (eventsOutput += chunk.toString()));
    events.stderr!.on('data', (chunk: Buffer) => (eventsOutput += chunk.toString()));
  });

  after(async () => {
    await stop(events);
    await stop(containerd);
    process.off('exit', killOnExit);
    process.off('SIGINT', killOnSignal);
    process.off('SIGTERM', killOnSignal);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('forwards an event that `ctr events` prints', async () => {
    const client = await TtrpcClient.connect(`unix://${join(dir, 'c.sock.ttrpc')}`, { timeoutMs: 5000 });
    try {
      const forwarder = typedClient(client, EventsService, { namespace: 'default', timeoutMs: 5000 });
      const event = { typeUrl: 'containerd.events.ContainerCreate', value: Buffer.from(ContainerCreate.encode({ id: 'x', image: '', runtime: undefined }).finish()) };
      const printed = () => /\bdefault\s+\/test\/hello\s+\{"id":"x"\}/.test(eventsOutput);
      // ctr gives no sign of having subscribed, so keep publishing until it prints one.
      const deadline = Date.now() + STARTUP_TIMEOUT_MS;
      while (!printed()) {
        if (Date.now() > deadline) assert.fail(`ctr events never printed the forwarded event; its output:\n${eventsOutput}`);
        await forwarder.forward({ envelope: { timestamp: new Date(), namespace: 'default', topic: '/test/hello', event } });
        await sleep(250);
      }
    } finally {
      client.close();
    }
  });

  it('gets containerd’s own error statuses back', async () => {
    const client = await TtrpcClient.connect(`unix://${join(dir, 'c.sock.ttrpc')}`);
    try {
      await assert.rejects(client.call('containerd.services.events.ttrpc.v1.Events', 'Nope', Buffer.alloc(0)), { code: 12 });
      const forwarder = typedClient(client, EventsService);
      await assert.rejects(
        forwarder.forward({ envelope: { timestamp: new Date(), namespace: '', topic: '/test/hello', event: undefined } }),
        { code: 3 },
      );
    } finally {
      client.close();
    }
  });
});
