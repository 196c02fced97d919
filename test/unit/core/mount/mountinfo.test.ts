import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError, NotFoundError } from '../../../../core/errdefs/errdefs.js';
import {
  lookupMount, parseMountInfo, parseMountInfoLine, unescapeMountField, type MountInfo,
} from '../../../../core/mount/mountinfo.js';

const SAMPLE = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
61 27 0:45 / /run/with\\040space\\011tab rw,nosuid,nodev master:3 shared:7 - tmpfs my\\134src rw,size=1024k
70 27 0:50 /sub/dir /mnt/bind ro,relatime - ext4 /dev/vda rw
80 27 0:60 / /var/lib/berth/merged rw,relatime - overlay overlay rw,lowerdir=/l1:/l2,upperdir=/u,workdir=/w
`;

describe('parseMountInfo', () => {
  const mounts = parseMountInfo(SAMPLE);

  it('parses every line', () => {
    assert.equal(mounts.length, 5);
    assert.deepEqual(mounts[0], {
      id: 22, parent: 27, major: 0, minor: 21, root: '/', mountpoint: '/proc', options: 'rw,relatime',
      optional: '', fstype: 'proc', source: 'proc', vfsOptions: 'rw',
    });
  });

  it('collects optional fields before the separator', () => {
    assert.equal(mounts[1].optional, 'shared:1');
    assert.equal(mounts[2].optional, 'master:3 shared:7');
    assert.equal(mounts[2].fstype, 'tmpfs');
    assert.equal(mounts[2].options, 'rw,nosuid,nodev');
  });

  it('decodes octal escapes in paths and source', () => {
    assert.equal(mounts[2].mountpoint, '/run/with space\ttab');
    assert.equal(mounts[2].source, 'my\\src');
  });

  it('keeps root and super options', () => {
    assert.equal(mounts[3].root, '/sub/dir');
    assert.equal(mounts[3].major, 0);
    assert.equal(mounts[3].minor, 50);
    assert.equal(mounts[4].vfsOptions, 'rw,lowerdir=/l1:/l2,upperdir=/u,workdir=/w');
  });

  it('rejects malformed lines', () => {
    assert.throws(() => parseMountInfoLine('1 2 0:1 / /x rw'), InvalidArgumentError);
    assert.throws(() => parseMountInfoLine('1 2 0:1 / /x rw shared:1 ext4 /dev/x rw'), InvalidArgumentError);
  });
});

describe('unescapeMountField', () => {
  it('handles newline, backslash and multi-byte UTF-8 escapes', () => {
    assert.equal(unescapeMountField('a\\012b'), 'a\nb');
    assert.equal(unescapeMountField('a\\134\\134b'), 'a\\\\b');
    assert.equal(unescapeMountField('caf\\303\\251'), 'café');
    assert.equal(unescapeMountField('plain/é'), 'plain/é');
    assert.equal(unescapeMountField('\\\\x'), '\\\\x', 'a backslash not followed by three octal digits stays');
  });
});

describe('lookupMount', () => {
  const mk = (id: number, mountpoint: string, fstype: string): MountInfo => ({
    id, parent: 1, major: 0, minor: id, root: '/', mountpoint, options: 'rw', optional: '', fstype, source: fstype, vfsOptions: 'rw',
  });
  const table = [
    mk(1, '/', 'ext4'), mk(2, '/nonexistent-berth/a', 'tmpfs'), mk(3, '/nonexistent-berth/a/b', 'overlay'),
    mk(4, '/nonexistent-berth/a', 'btrfs'),
  ];

  it('picks the longest containing mountpoint, topmost when stacked', async () => {
    assert.equal((await lookupMount('/nonexistent-berth/a/b/c', table)).fstype, 'overlay');
    assert.equal((await lookupMount('/nonexistent-berth/a/x', table)).id, 4);
    assert.equal((await lookupMount('/nonexistent-berth/a', table)).id, 4);
  });

  it('matches whole path components only', async () => {
    assert.equal((await lookupMount('/nonexistent-berth/ab', table)).fstype, 'ext4');
  });

  it('throws NotFound when nothing contains the path', async () => {
    await assert.rejects(lookupMount('/x', [mk(2, '/y', 'tmpfs')]), NotFoundError);
  });
});
