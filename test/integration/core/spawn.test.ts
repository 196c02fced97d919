/**
 * posix_spawn helper (core/sys/spawn.ts) against real programs: exit statuses, output,
 * stdin, working directory, environment, session, signal state, descriptors and timeouts.
 */
import assert from 'node:assert/strict';
import { openSync, readdirSync, closeSync } from 'node:fs';
import { test } from 'node:test';
import { spawnAvailable, spawnProcess } from '../../../core/sys/spawn.js';

const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

test('posix_spawn is available on this Linux host', () => {
  assert.equal(spawnAvailable(), true);
});

test('exit status, combined output in order, separate stderr', async () => {
  const combined = await spawnProcess('sh', ['-c', 'echo out; echo err >&2; echo out2; exit 3'], { env, combined: true });
  assert.equal(combined.code, 3);
  assert.equal(combined.signal, null);
  assert.equal(combined.stdout.toString(), 'out\nerr\nout2\n');
  const split = await spawnProcess('sh', ['-c', 'echo out; echo err >&2'], { env });
  assert.deepEqual([split.code, split.stdout.toString(), split.stderr.toString()], [0, 'out\n', 'err\n']);
});

test('stdin, working directory and exactly the given environment', async () => {
  const r = await spawnProcess('sh', ['-c', 'cat; pwd; env | sort'], { env: { ...env, ONLY: 'this', SKIPPED: undefined }, cwd: '/tmp', stdin: Buffer.from('fed\n') });
  const lines = r.stdout.toString().trim().split('\n');
  assert.equal(lines[0], 'fed');
  assert.equal(lines[1], '/tmp');
  assert.ok(lines.includes('ONLY=this'));
  assert.ok(!lines.some((l) => l.startsWith('SKIPPED=')));
  const empty = await spawnProcess('cat', [], { env });
  assert.equal(empty.stdout.length, 0, 'stdin is /dev/null without input');
});

test('the child leads a new session with default signal handling and no blocked signals', async () => {
  // The spawned program reads its own state (a shell would report the mask it blocks while
  // waiting for a command).
  const stat = await spawnProcess('cat', ['/proc/self/stat'], { env });
  const fields = stat.stdout.toString().slice(stat.stdout.toString().lastIndexOf(')') + 2).split(' ');
  assert.equal(fields[3], String(stat.pid), 'session id is the child\'s pid');
  const status = await spawnProcess('grep', ['-E', '^Sig(Ign|Blk):', '/proc/self/status'], { env });
  const masks = status.stdout.toString().trim().split('\n');
  assert.equal(masks.length, 2);
  // SIGPIPE, ignored by Node, must not stay ignored in the child; nothing is blocked.
  for (const line of masks) assert.match(line, /^Sig(Ign|Blk):\s+0+$/);
});

test("the parent's own descriptors do not reach the child", async () => {
  // Node opens everything close-on-exec; posix_spawn must not undo that.
  const extra = openSync('/dev/null', 'r');
  try {
    const r = await spawnProcess('ls', ['/proc/self/fd'], { env });
    const fds = r.stdout.toString().trim().split('\n').map(Number);
    assert.ok(fds.includes(0) && fds.includes(1) && fds.includes(2));
    assert.ok(!fds.includes(extra), `fd ${extra} leaked: ${fds.join(' ')}`);
  } finally {
    closeSync(extra);
  }
});

test('a killed child reports its signal; a missing program rejects with ENOENT', async () => {
  const r = await spawnProcess('sh', ['-c', 'kill -TERM $$'], { env });
  assert.deepEqual([r.code, r.signal], [null, 'SIGTERM']);
  await assert.rejects(spawnProcess('/nonexistent/prog', [], { env }), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && /spawn '\/nonexistent\/prog'/.test(e.message));
});

test('a timeout kills the child and says so', async () => {
  const started = Date.now();
  const r = await spawnProcess('sleep', ['30'], { env, timeoutMs: 200 });
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, 'SIGKILL');
  assert.ok(Date.now() - started < 10_000);
});

test('no descriptors leak across many spawns', async () => {
  const before = readdirSync('/proc/self/fd').length;
  for (let i = 0; i < 30; i++) await spawnProcess('true', [], { env, stdin: Buffer.from('x') });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(readdirSync('/proc/self/fd').length, before);
});
