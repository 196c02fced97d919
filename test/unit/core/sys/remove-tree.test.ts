import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { removeTreeSync } from '../../../../core/sys/remove-tree.js';

describe('removeTreeSync', () => {
  const base = mkdtempSync(join(tmpdir(), 'berth-rmtree-'));
  after(() => rmSync(base, { recursive: true, force: true }));

  it('removes nested directories, files and empty directories', () => {
    const root = join(base, 'tree');
    mkdirSync(join(root, 'a', 'b', 'c'), { recursive: true });
    mkdirSync(join(root, 'empty'));
    writeFileSync(join(root, 'top'), 'x');
    writeFileSync(join(root, 'a', 'b', 'file'), 'y');
    removeTreeSync(root);
    assert.equal(existsSync(root), false);
  });

  it('removes symbolic links without following them', () => {
    const outside = join(base, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'keep'), 'k');
    const root = join(base, 'links');
    mkdirSync(root);
    symlinkSync(outside, join(root, 'dir-link'));
    symlinkSync(join(outside, 'keep'), join(root, 'file-link'));
    symlinkSync(join(base, 'nowhere'), join(root, 'dangling'));
    removeTreeSync(root);
    assert.equal(existsSync(root), false);
    assert.deepEqual(readdirSync(outside), ['keep'], 'the link targets are untouched');
  });

  it('removes a single file and ignores a missing path', () => {
    const file = join(base, 'lone');
    writeFileSync(file, 'z');
    removeTreeSync(file);
    assert.equal(existsSync(file), false);
    assert.doesNotThrow(() => removeTreeSync(join(base, 'never-existed')));
  });

  it('reports what it cannot remove', () => {
    // A file where a directory is expected in the path: ENOTDIR on the parent, not ENOENT.
    const file = join(base, 'plain');
    writeFileSync(file, 'p');
    assert.throws(() => removeTreeSync(join(file, 'below')), { code: 'ENOTDIR' });
  });
});
