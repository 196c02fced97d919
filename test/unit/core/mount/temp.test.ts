import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readonlyMounts, removeVolatileOption } from '../../../../core/mount/temp.js';

describe('temporary-mount option rewriting', () => {
  const overlay = {
    type: 'overlay',
    source: 'overlay',
    options: ['index=off', 'workdir=/s/3/work', 'upperdir=/s/3/fs', 'lowerdir=/s/2/fs:/s/1/fs', 'volatile'],
  };

  it('removes volatile from overlays only', () => {
    const out = removeVolatileOption([overlay, { type: 'tmpfs', source: 'tmpfs', options: ['volatile'] }]);
    assert.deepEqual(out[0].options, ['index=off', 'workdir=/s/3/work', 'upperdir=/s/3/fs', 'lowerdir=/s/2/fs:/s/1/fs']);
    assert.deepEqual(out[1].options, ['volatile']);
    assert.equal(overlay.options.length, 5, 'input untouched');
  });

  it('makes overlays read-only by moving upper into lowerdir', () => {
    const [ro] = readonlyMounts([overlay]);
    assert.deepEqual(ro.options, ['index=off', 'lowerdir=/s/3/fs:/s/2/fs:/s/1/fs', 'volatile']);
  });

  it('replaces rw/ro with a single trailing ro elsewhere', () => {
    const [ro] = readonlyMounts([{ type: 'bind', source: '/x', options: ['rw', 'rbind', 'ro'] }]);
    assert.deepEqual(ro.options, ['rbind', 'ro']);
  });
});
