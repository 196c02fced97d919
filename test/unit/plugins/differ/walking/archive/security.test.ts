// Crafted archives must never create or modify anything outside the apply root. Each case
// runs in a sandbox whose sibling "sentinel" directory is snapshotted before and after.
import { describe, it, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { applyLayer, type ApplyMode } from '../../../../../../plugins/differ/walking/archive/apply.js';
import { isInvalidArgument, isNotFound } from '../../../../../../core/errdefs/errdefs.js';
import { buildTar, streamOf, makeSandbox, snapshotTree, isRoot, type Sandbox, type TarSpec } from './helpers.js';

for (const mode of ['direct', 'overlay'] as ApplyMode[]) {
  describe(`applyLayer containment (${mode})`, { skip: !isRoot && 'needs root' }, () => {
    let sb: Sandbox;
    let before: Awaited<ReturnType<typeof snapshotTree>>;
    let sandboxNames: string[];
    let passwdBefore: { ino: number; nlink: number; mtimeMs: number };

    beforeEach(async () => {
      sb = await makeSandbox();
      before = await snapshotTree(sb.sentinel, { dirMtimes: true, nlink: true });
      sandboxNames = (await fsp.readdir(sb.dir)).sort();
      const st = await fsp.stat('/etc/passwd');
      passwdBefore = { ino: st.ino, nlink: st.nlink, mtimeMs: st.mtimeMs };
    });
    afterEach(async () => {
      // Nothing appeared next to root, nothing in the sentinel changed, /etc/passwd untouched.
      assert.deepEqual((await fsp.readdir(sb.dir)).sort(), sandboxNames);
      assert.deepEqual(await snapshotTree(sb.sentinel, { dirMtimes: true, nlink: true }), before);
      const st = await fsp.stat('/etc/passwd');
      assert.deepEqual({ ino: st.ino, nlink: st.nlink, mtimeMs: st.mtimeMs }, passwdBefore);
      await sb.cleanup();
    });

    const apply = (specs: TarSpec[]) => applyLayer(streamOf(buildTar(specs)), sb.root, { mode });
    const inRoot = (p: string) => path.join(sb.root, p);
    const rel = (abs: string) => path.relative('/', abs);

    it('contains ../ names at the root', async () => {
      await apply([
        { path: '../../etc/x', data: 'dotdot' },
        { path: 'a/../../../sentinel/secret', data: 'overwrite?' },
        { path: '../sentinel/', type: 'Directory', mode: 0o777 },
      ]);
      assert.equal(await fsp.readFile(inRoot('etc/x'), 'utf8'), 'dotdot');
      assert.equal(await fsp.readFile(inRoot('sentinel/secret'), 'utf8'), 'overwrite?');
    });

    it('treats absolute names as relative to the root', async () => {
      await apply([
        { path: '/etc/x', data: 'abs' },
        { path: path.join(sb.sentinel, 'secret'), data: 'abs2' },
      ]);
      assert.equal(await fsp.readFile(inRoot('etc/x'), 'utf8'), 'abs');
      assert.equal(await fsp.readFile(inRoot(rel(path.join(sb.sentinel, 'secret'))), 'utf8'), 'abs2');
    });

    it('resolves an absolute symlink in the path inside the root', async () => {
      await apply([
        { path: 'evil', type: 'SymbolicLink', linkpath: '/' },
        { path: 'evil/etc/x', data: 'via /' },
        { path: 'evil2', type: 'SymbolicLink', linkpath: sb.sentinel },
        { path: 'evil2/pwned', data: 'via sentinel link' },
        { path: 'evil2/secret', data: 'clobber?' },
      ]);
      assert.equal(await fsp.readlink(inRoot('evil')), '/');
      assert.equal(await fsp.readFile(inRoot('etc/x'), 'utf8'), 'via /');
      assert.equal(await fsp.readFile(inRoot(rel(path.join(sb.sentinel, 'pwned'))), 'utf8'), 'via sentinel link');
      assert.equal(await fsp.readFile(inRoot(rel(path.join(sb.sentinel, 'secret'))), 'utf8'), 'clobber?');
    });

    it('clamps relative symlinks that climb above the root', async () => {
      await apply([
        { path: 'd/', type: 'Directory' },
        { path: 'd/up', type: 'SymbolicLink', linkpath: '../../..' },
        { path: 'd/up/x', data: 'clamped' },
        { path: 'd/up/sentinel/secret', data: 'clamped2' },
        { path: 'loop1', type: 'SymbolicLink', linkpath: 'loop2' },
        { path: 'loop2', type: 'SymbolicLink', linkpath: 'loop1' },
      ]);
      assert.equal(await fsp.readFile(inRoot('x'), 'utf8'), 'clamped');
      assert.equal(await fsp.readFile(inRoot('sentinel/secret'), 'utf8'), 'clamped2');
      await assert.rejects(apply([{ path: 'loop1/x', data: 'never' }]), (e) => isInvalidArgument(e));
    });

    it('replaces a final symlink instead of writing through it', async () => {
      await apply([
        { path: 'f', type: 'SymbolicLink', linkpath: path.join(sb.sentinel, 'secret') },
        { path: 'f', data: 'replaced the link' },
        { path: 'd', type: 'SymbolicLink', linkpath: sb.sentinel },
        { path: 'd/', type: 'Directory', mode: 0o700 },
        { path: 'w', type: 'SymbolicLink', linkpath: path.join(sb.sentinel, 'etc') },
        { path: '.wh.w' },
        { path: 'w2', type: 'SymbolicLink', linkpath: sb.sentinel },
        { path: 'w2/.wh.secret' },
        { path: 'w2/.wh..wh..opq' },
      ]);
      assert.equal(await fsp.readFile(inRoot('f'), 'utf8'), 'replaced the link');
      assert.ok((await fsp.lstat(inRoot('d'))).isDirectory());
    });

    it('rejects hardlinks whose target climbs out of the root', async () => {
      for (const linkpath of ['../outside', 'a/../../sentinel/secret', '/../etc/passwd']) {
        await assert.rejects(apply([{ path: 'h', type: 'Link', linkpath }]), (e) => isInvalidArgument(e), linkpath);
      }
    });

    it('resolves absolute hardlink targets inside the root', async () => {
      // /etc/passwd means <root>/etc/passwd, which does not exist: a clear not-found error.
      await assert.rejects(apply([{ path: 'h', type: 'Link', linkpath: '/etc/passwd' }]), (e) => isNotFound(e));
      await assert.rejects(apply([{ path: 'h2', type: 'Link', linkpath: path.join(sb.sentinel, 'secret') }]), (e) => isNotFound(e));
      // Through a symlinked parent: still resolved inside the root.
      await assert.rejects(
        apply([
          { path: 'ev', type: 'SymbolicLink', linkpath: sb.sentinel },
          { path: 'h3', type: 'Link', linkpath: 'ev/secret' },
        ]),
        (e) => isNotFound(e),
      );
      // And a legitimate in-root absolute target works.
      await apply([
        { path: 'etc/passwd', data: 'in root' },
        { path: 'h4', type: 'Link', linkpath: '/etc/passwd' },
      ]);
      assert.equal((await fsp.stat(inRoot('h4'))).ino, (await fsp.stat(inRoot('etc/passwd'))).ino);
    });

    it('hardlinks a symlink itself, never what it points to', async () => {
      await apply([
        { path: 's', type: 'SymbolicLink', linkpath: path.join(sb.sentinel, 'secret') },
        { path: 'hs', type: 'Link', linkpath: 's' },
      ]);
      const st = await fsp.lstat(inRoot('hs'));
      assert.ok(st.isSymbolicLink());
    });
  });
}
