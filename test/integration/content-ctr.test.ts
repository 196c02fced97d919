/**
 * The real ctr 1.6 client against berthd for content and leases: ingest with an expected
 * size and digest, a wrong digest refused and never committed, ls/get/label/rm, active
 * ingests, leases create/ls/rm, and a namespace that cannot go while it holds blobs.
 * The berth CLI is checked to print what ctr prints for the same state.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { collectGarbage, startDaemon, ctr, berth, type TestDaemon } from '../helpers/daemon.js';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** ctr with binary stdout (content get). */
function ctrBytes(address: string, ns: string, args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('ctr', ['-a', address, '-n', ns, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b) => (stderr += b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr }));
  });
}

describe('ctr content and leases against berthd', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
  });
  after(async () => {
    await d?.dispose();
  });

  test('ingest with expected size and digest, ls, get, label, rm', async () => {
    const ns = 'ctr-roundtrip';
    await collectGarbage(d.connect(ns));
    const blob = randomBytes(3_000_000);
    const dg = sha(blob);
    let r = await ctr(d.address, ['content', 'ingest', '--expected-size', String(blob.length), '--expected-digest', dg, 'ref-1'], { namespace: ns, input: blob });
    assert.equal(r.code, 0, r.stderr);
    // Ingesting it again is fine: the blob exists.
    r = await ctr(d.address, ['content', 'ingest', '--expected-digest', dg, 'ref-2'], { namespace: ns, input: blob });
    assert.equal(r.code, 0, r.stderr);
    // Also without an expected digest, so the commit itself finds the blob, and past the size
    // where hashing moves to a worker (whose state goes with the writer before the commit's
    // caller asks for the digest once more).
    const big = randomBytes(6 << 20);
    for (const ref of ['big-1', 'big-2']) {
      const again = await ctr(d.address, ['content', 'ingest', ref], { namespace: ns, input: big });
      assert.equal(again.code, 0, `${ref}: ${again.stderr}`);
    }
    assert.equal((await ctr(d.address, ['content', 'rm', sha(big)], { namespace: ns })).code, 0);

    r = await ctr(d.address, ['content', 'ls'], { namespace: ns });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    // Go's tabwriter with tab padding: the digest column is 9 tabs wide.
    assert.match(lines[0]!, /^DIGEST\t{9}SIZE\tAGE\t+LABELS$/);
    assert.match(lines[1]!, new RegExp(`^${dg}\\t3MB\\t.*\\t-$`));
    const mine = await berth(d.address, ['content', 'ls'], { namespace: ns });
    assert.equal(mine.stdout.split('\n')[0], lines[0], 'berth lays the table out like ctr');
    assert.equal(mine.stdout.split('\n')[1]!.split('\t')[0], dg);

    const got = await ctrBytes(d.address, ns, ['content', 'get', dg]);
    assert.equal(got.code, 0, got.stderr);
    assert.ok(got.stdout.equals(blob), 'content get returns the same bytes');

    r = await ctr(d.address, ['content', 'label', dg, 'color=blue', 'flag'], { namespace: ns });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split(',').sort(), ['color=blue', 'flag=true']);
    r = await ctr(d.address, ['content', 'ls'], { namespace: ns });
    assert.match(r.stdout, /color=blue/);
    r = await ctr(d.address, ['content', 'label', dg, 'flag='], { namespace: ns });
    assert.equal(r.stdout.trim(), 'color=blue');

    r = await ctr(d.address, ['content', 'rm', dg], { namespace: ns });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), dg);
    r = await ctr(d.address, ['content', 'ls', '-q'], { namespace: ns });
    assert.equal(r.stdout, '');
    // Removing what is not there prints nothing and succeeds, like containerd.
    r = await ctr(d.address, ['content', 'rm', dg], { namespace: ns });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '');
  });

  test('a wrong expected digest is refused and nothing is committed', async () => {
    const ns = 'ctr-wrong';
    const blob = randomBytes(4096);
    const zero = `sha256:${'0'.repeat(64)}`;
    const r = await ctr(d.address, ['content', 'ingest', '--expected-size', '4096', '--expected-digest', zero, 'bad'], { namespace: ns, input: blob });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unexpected commit digest .*, expected sha256:0{64}: failed precondition/);
    const ls = await ctr(d.address, ['content', 'ls', '-q'], { namespace: ns });
    assert.equal(ls.stdout, '');
    // The failed ingest stays active (containerd keeps it for a retry).
    const active = await ctr(d.address, ['content', 'active'], { namespace: ns });
    assert.match(active.stdout, /^REF\tSIZE\tAGE\t+\nbad\t4.096kB\tLess than a second\t\n$/);
    const mine = await berth(d.address, ['content', 'active'], { namespace: ns });
    assert.equal(mine.stdout, active.stdout, 'berth prints what ctr prints');
    const wrongSize = await ctr(d.address, ['content', 'ingest', '--expected-size', '10', 'short'], { namespace: ns, input: blob });
    assert.notEqual(wrongSize.code, 0);
    assert.equal((await ctr(d.address, ['content', 'ls', '-q'], { namespace: ns })).stdout, '');
  });

  test('leases create, ls, rm', async () => {
    const ns = 'ctr-leases';
    let r = await ctr(d.address, ['leases', 'create', '--id', 'l-1', '--expires', '1h', 'k=v'], { namespace: ns });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'l-1\n');
    r = await ctr(d.address, ['leases', 'create'], { namespace: ns });
    const generated = r.stdout.trim();
    assert.match(generated, /^\d+-[A-Za-z0-9_-]{4}$/);
    r = await ctr(d.address, ['leases', 'ls'], { namespace: ns });
    assert.match(r.stdout, /^ID +CREATED AT +LABELS +\n/);
    assert.match(r.stdout, /\nl-1 +\S+ +containerd\.io\/gc\.expire=\S+,k=v +\n/);
    assert.ok(r.stdout.includes(`\n${generated} `));
    const mine = await berth(d.address, ['leases', 'ls', 'id==l-1'], { namespace: ns });
    const theirs = await ctr(d.address, ['leases', 'ls', 'id==l-1'], { namespace: ns });
    assert.equal(mine.stdout, theirs.stdout, 'berth prints what ctr prints');
    r = await ctr(d.address, ['leases', 'rm', 'l-1', generated], { namespace: ns });
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d.address, ['leases', 'ls', '-q'], { namespace: ns });
    assert.equal(r.stdout, '');
    r = await ctr(d.address, ['leases', 'rm', 'l-1'], { namespace: ns });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /lease "l-1": not found/);
  });

  test('a namespace holding content cannot be removed until it is emptied', async () => {
    const ns = 'ctr-busy';
    await collectGarbage(d.connect(ns));
    const blob = randomBytes(1000);
    let r = await ctr(d.address, ['content', 'ingest', 'r'], { namespace: ns, input: blob });
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d.address, ['namespaces', 'rm', ns]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr + r.stdout, /must be empty, but it still has blobs/);
    r = await ctr(d.address, ['content', 'rm', sha(blob)], { namespace: ns });
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d.address, ['namespaces', 'rm', ns]);
    assert.equal(r.code, 0, r.stderr);
  });
});
