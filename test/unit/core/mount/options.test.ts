import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  MS_BIND, MS_DIRSYNC, MS_MANDLOCK, MS_NOATIME, MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_PRIVATE,
  MS_RDONLY, MS_REC, MS_RELATIME, MS_REMOUNT, MS_SHARED, MS_SLAVE, MS_STRICTATIME, MS_SYNCHRONOUS, MS_UNBINDABLE,
} from '../../../../core/mount/flags.js';
import { compactLowerdirOption, longestCommonPrefix, optionsSize, parseMountOptions } from '../../../../core/mount/options.js';

describe('parseMountOptions', () => {
  it('maps each setting option to its flag', () => {
    const cases: Array<[string, number]> = [
      ['ro', MS_RDONLY], ['bind', MS_BIND], ['rbind', MS_BIND | MS_REC], ['nosuid', MS_NOSUID],
      ['nodev', MS_NODEV], ['noexec', MS_NOEXEC], ['sync', MS_SYNCHRONOUS], ['remount', MS_REMOUNT],
      ['mand', MS_MANDLOCK], ['dirsync', MS_DIRSYNC], ['noatime', MS_NOATIME], ['nodiratime', MS_NODIRATIME],
      ['relatime', MS_RELATIME], ['strictatime', MS_STRICTATIME],
    ];
    for (const [option, flag] of cases) {
      assert.deepEqual(parseMountOptions([option]), { flags: flag, propagationFlags: 0, data: [] }, option);
    }
  });

  it('clearing options undo their counterpart, in order', () => {
    const pairs: Array<[string, string]> = [
      ['ro', 'rw'], ['nosuid', 'suid'], ['nodev', 'dev'], ['noexec', 'exec'], ['sync', 'async'],
      ['mand', 'nomand'], ['noatime', 'atime'], ['nodiratime', 'diratime'], ['relatime', 'norelatime'],
      ['strictatime', 'nostrictatime'],
    ];
    for (const [set, clear] of pairs) {
      assert.equal(parseMountOptions([set, clear]).flags, 0, `${set},${clear}`);
      assert.notEqual(parseMountOptions([clear, set]).flags, 0, `${clear},${set}`);
    }
  });

  it('a clearing option alone sets nothing', () => {
    assert.equal(parseMountOptions(['rw', 'suid', 'dev', 'exec', 'async', 'atime']).flags, 0);
  });

  it('combines flags and keeps unknown options as data in order', () => {
    const parsed = parseMountOptions(['index=off', 'ro', 'workdir=/w', 'nosuid', 'upperdir=/u', 'lowerdir=/a:/b']);
    assert.equal(parsed.flags, MS_RDONLY | MS_NOSUID);
    assert.deepEqual(parsed.data, ['index=off', 'workdir=/w', 'upperdir=/u', 'lowerdir=/a:/b']);
    assert.equal(parsed.loopSetup, undefined);
  });

  it('keeps propagation apart from the flags; the last one wins', () => {
    const cases: Array<[string, number]> = [
      ['private', MS_PRIVATE], ['rprivate', MS_PRIVATE | MS_REC], ['shared', MS_SHARED],
      ['rshared', MS_SHARED | MS_REC], ['slave', MS_SLAVE], ['rslave', MS_SLAVE | MS_REC],
      ['unbindable', MS_UNBINDABLE], ['runbindable', MS_UNBINDABLE | MS_REC],
    ];
    for (const [option, flag] of cases) {
      const parsed = parseMountOptions(['bind', option]);
      assert.equal(parsed.propagationFlags, flag, option);
      assert.equal(parsed.flags, MS_BIND, option);
    }
    assert.equal(parseMountOptions(['rshared', 'private']).propagationFlags, MS_PRIVATE);
  });

  it('recognizes loop and drops defaults', () => {
    assert.deepEqual(parseMountOptions(['loop', 'defaults', 'ro']), {
      flags: MS_RDONLY, propagationFlags: 0, data: [], loopSetup: true,
    });
  });

  it('handles an empty list', () => {
    assert.deepEqual(parseMountOptions([]), { flags: 0, propagationFlags: 0, data: [] });
  });
});

describe('compactLowerdirOption', () => {
  const snaps = '/var/lib/berth/io.containerd.snapshotter.v1.overlayfs/snapshots';

  it('rewrites lowerdirs relative to the parent of their common prefix', () => {
    const options = ['index=off', `workdir=${snaps}/12/work`, `upperdir=${snaps}/12/fs`, `lowerdir=${snaps}/1/fs:${snaps}/10/fs:${snaps}/11/fs`];
    const { chdir, options: out } = compactLowerdirOption(options);
    assert.equal(chdir, snaps);
    assert.deepEqual(out, [options[0], options[1], options[2], 'lowerdir=1/fs:10/fs:11/fs']);
    assert.equal(options[3].startsWith(`lowerdir=${snaps}`), true, 'input is not modified');
  });

  it('steps up a level when the prefix ends at a slash', () => {
    const { chdir, options } = compactLowerdirOption([`lowerdir=${snaps}/2/fs:${snaps}/3/fs`]);
    assert.equal(chdir, snaps);
    assert.deepEqual(options, ['lowerdir=2/fs:3/fs']);
  });

  it('leaves single, missing or root-only lowerdirs alone', () => {
    assert.deepEqual(compactLowerdirOption([`lowerdir=${snaps}/1/fs`]), { options: [`lowerdir=${snaps}/1/fs`] });
    assert.deepEqual(compactLowerdirOption(['ro']), { options: ['ro'] });
    assert.deepEqual(compactLowerdirOption(['lowerdir=/a:/b']), { options: ['lowerdir=/a:/b'] });
    assert.deepEqual(compactLowerdirOption(['lowerdir=rel/a:rel/b']), { options: ['lowerdir=rel/a:rel/b'] });
  });
});

describe('helpers', () => {
  it('longestCommonPrefix', () => {
    assert.equal(longestCommonPrefix([]), '');
    assert.equal(longestCommonPrefix(['/a/b']), '/a/b');
    assert.equal(longestCommonPrefix(['/s/1/fs', '/s/10/fs', '/s/2/fs']), '/s/');
    assert.equal(longestCommonPrefix(['abc', 'xyz']), '');
  });

  it('optionsSize counts bytes', () => {
    assert.equal(optionsSize(['ab', 'cé']), 5);
  });
});
