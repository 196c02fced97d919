// The extraction rules of client/install on real directories, fed hand-made tar streams (so
// names like `../bin/x` and hostile link targets can be written at all): which entries are
// selected, that writes stay inside the install path, whiteouts, --replace, and entry types.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { cleanName, InstallTarget, selectedDir } from '../../client/install/index.js';
import { codeOf, Code } from '../../core/errdefs/errdefs.js';

interface Entry {
  name: string;
  type?: '0' | '1' | '2' | '3' | '5' | '6';
  body?: string;
  mode?: number;
  link?: string;
}

/** A ustar archive of `entries` (plus the two zero blocks that end it). */
function tarOf(entries: Entry[]): Readable {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const h = Buffer.alloc(512);
    const body = Buffer.from(e.body ?? '');
    const put = (at: number, len: number, value: string) => h.write(value, at, len, 'utf8');
    const octal = (at: number, len: number, n: number) => put(at, len, `${n.toString(8).padStart(len - 1, '0')}\0`);
    put(0, 100, e.name);
    octal(100, 8, e.mode ?? 0o755);
    octal(108, 8, 0);
    octal(116, 8, 0);
    octal(124, 12, e.type === undefined || e.type === '0' ? body.length : 0);
    octal(136, 12, 1_700_000_000);
    put(156, 1, e.type ?? '0');
    put(157, 100, e.link ?? '');
    put(257, 6, 'ustar\0');
    put(263, 2, '00');
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    put(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
    blocks.push(h);
    if (body.length && (e.type ?? '0') === '0') {
      const padded = Buffer.alloc(Math.ceil(body.length / 512) * 512);
      body.copy(padded);
      blocks.push(padded);
    }
  }
  blocks.push(Buffer.alloc(1024));
  return Readable.from([Buffer.concat(blocks)]);
}

let dir: string;
let root: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-install-x-'));
  root = join(dir, 'opt');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const ls = (p: string) => (existsSync(p) ? readdirSync(p).filter((n) => !n.startsWith('.install-')).sort() : []);

describe('entry selection', () => {
  it('cleans names like Go and selects parent dir bin (and lib with libs)', () => {
    const cases: [string, boolean, string | undefined][] = [
      ['bin/x', false, 'bin'],
      ['./bin/x', false, 'bin'],
      ['bin/../bin/x', false, 'bin'],
      ['bin/', false, undefined],
      ['bin', false, undefined],
      ['/bin/x', false, undefined],
      ['../bin/x', false, undefined],
      ['usr/bin/x', false, undefined],
      ['bin/sub/x', false, undefined],
      ['bin/sub/', false, 'bin'],
      ['lib/libx.so', false, undefined],
      ['lib/libx.so', true, 'lib'],
      ['etc/x', true, undefined],
    ];
    for (const [name, libs, want] of cases) assert.equal(selectedDir(name, libs), want, `${name} libs=${libs}`);
    assert.equal(cleanName('./bin//x/'), 'bin/x');
  });
});

describe('InstallTarget', () => {
  it('writes only selected entries, with their modes, symlinks and in-path hard links', async () => {
    const t = new InstallTarget(root, {});
    await t.applyLayer(tarOf([
      { name: 'bin/', type: '5' },
      { name: 'bin/tool', body: 'tool\n', mode: 0o751 },
      { name: './bin/dot', body: 'dot\n' },
      { name: 'bin/../bin/norm', body: 'norm\n' },
      { name: '../bin/escape', body: 'no\n' },
      { name: '/bin/absolute', body: 'no\n' },
      { name: 'etc/conf', body: 'no\n' },
      { name: 'bin/sub/', type: '5', mode: 0o750 },
      { name: 'bin/sub/deep', body: 'no\n' },
      { name: 'bin/link', type: '2', link: '/etc/passwd' },
      { name: 'bin/hard', type: '1', link: 'bin/tool' },
      { name: 'bin/hard-abs', type: '1', link: '/bin/dot' },
      { name: 'bin/fifo', type: '6' },
    ]));
    assert.deepEqual(ls(root), ['bin']);
    assert.deepEqual(ls(join(root, 'bin')), ['dot', 'hard', 'hard-abs', 'link', 'norm', 'sub', 'tool']);
    assert.equal(statSync(join(root, 'bin', 'tool')).mode & 0o7777, 0o751);
    assert.equal(readFileSync(join(root, 'bin', 'norm'), 'utf8'), 'norm\n');
    assert.equal(statSync(join(root, 'bin', 'hard')).ino, statSync(join(root, 'bin', 'tool')).ino);
    assert.equal(statSync(join(root, 'bin', 'hard-abs')).ino, statSync(join(root, 'bin', 'dot')).ino);
    assert.ok(lstatSync(join(root, 'bin', 'link')).isSymbolicLink(), 'symlinks are stored, not followed');
    assert.deepEqual(ls(join(root, 'bin', 'sub')), [], 'bin/sub/deep has parent bin/sub');
    assert.deepEqual(t.result().skipped, [{ name: 'bin/fifo', reason: 'FIFO entries are not installed' }]);
    assert.deepEqual(t.result().installed, ['bin/tool', 'bin/dot', 'bin/norm', 'bin/sub', 'bin/link', 'bin/hard', 'bin/hard-abs']);
  });

  it('refuses hard links that leave the install path', async () => {
    for (const link of ['../../etc/passwd', '..', 'bin/../../x']) {
      const t = new InstallTarget(join(dir, `hl-${link.length}`), {});
      await assert.rejects(t.applyLayer(tarOf([{ name: 'bin/evil', type: '1', link }])), /target outside of/);
    }
    // Through a symlinked directory inside the path.
    mkdirSync(root, { recursive: true });
    symlinkSync('/etc', join(root, 'lib'));
    const t = new InstallTarget(root, {});
    await assert.rejects(t.applyLayer(tarOf([{ name: 'bin/evil', type: '1', link: 'lib/passwd' }])), /target outside of/);
    assert.ok(!existsSync(join(root, 'bin', 'evil')));
  });

  it('needs replace for existing files, except ones this install wrote in an earlier layer', async () => {
    mkdirSync(join(root, 'bin'), { recursive: true });
    writeFileSync(join(root, 'bin', 'old'), 'mine\n');
    const t = new InstallTarget(root, {});
    await t.applyLayer(tarOf([{ name: 'bin/new', body: 'v1\n' }]));
    await t.applyLayer(tarOf([{ name: 'bin/new', body: 'v2\n' }]));
    assert.equal(readFileSync(join(root, 'bin', 'new'), 'utf8'), 'v2\n', 'a later layer updates an earlier one');
    const err = await t.applyLayer(tarOf([{ name: 'bin/old', body: 'theirs\n' }])).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof Error);
    assert.equal(err.message, `cannot replace bin/old in ${root}`);
    assert.equal(codeOf(err), Code.FAILED_PRECONDITION);
    assert.equal(readFileSync(join(root, 'bin', 'old'), 'utf8'), 'mine\n');

    const r = new InstallTarget(root, { replace: true });
    await r.applyLayer(tarOf([{ name: 'bin/old', body: 'theirs\n' }]));
    assert.equal(readFileSync(join(root, 'bin', 'old'), 'utf8'), 'theirs\n');
  });

  it('applies whiteouts to what it installed, never to files it found', async () => {
    mkdirSync(join(root, 'bin'), { recursive: true });
    writeFileSync(join(root, 'bin', 'preexisting'), 'keep\n');
    const t = new InstallTarget(root, { libs: true });
    await t.applyLayer(tarOf([{ name: 'bin/a', body: 'a' }, { name: 'bin/b', body: 'b' }, { name: 'lib/l', body: 'l' }]));
    await t.applyLayer(tarOf([{ name: 'bin/.wh.a', body: '' }, { name: 'bin/.wh.preexisting', body: '' }, { name: 'lib/.wh..wh..opq', body: '' }]));
    assert.deepEqual(ls(join(root, 'bin')), ['b', 'preexisting']);
    assert.deepEqual(ls(join(root, 'lib')), []);
    assert.deepEqual(t.result().installed, ['bin/b']);
  });

  it('accepts an empty layer and rejects a corrupt one', async () => {
    const t = new InstallTarget(root, {});
    await t.applyLayer(Readable.from([Buffer.alloc(0)]));
    await t.applyLayer(Readable.from([Buffer.alloc(1024)]));
    const junk = Buffer.alloc(1024, 0x41);
    await assert.rejects(t.applyLayer(Readable.from([junk]), { digest: 'sha256:abc' }), /layer sha256:abc: invalid tar archive/);
  });
});
