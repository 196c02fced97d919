import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cleanFileMappings } from '../../../../core/sys/malloc.js';

/** One smaps entry with the fields cleanFileMappings reads (and one it ignores). */
function entry(range: string, perms: string, path: string, rssKb: number, anonymousKb: number): string {
  return [
    `${range} ${perms} 00000000 fe:01 1234                       ${path}`.trimEnd(),
    'Size:               1024 kB',
    `Rss:                ${rssKb} kB`,
    'Pss:                  12 kB',
    `Anonymous:          ${anonymousKb} kB`,
    'VmFlags: rd ex mr mw me dw',
  ].join('\n');
}

describe('cleanFileMappings', () => {
  it('keeps only resident, read-only, file-backed mappings without copy-on-write pages', () => {
    const smaps = [
      entry('00400000-00b6f000', 'r--p', '/usr/bin/node', 7012, 0),
      entry('00b72000-025fe000', 'r-xp', '/usr/bin/node', 20912, 0),
      entry('0563a000-0563e000', 'r--p', '/usr/bin/node', 16, 16), // relocated (RELRO)
      entry('0563e000-0565d000', 'rw-p', '/usr/bin/node', 124, 60), // data
      entry('0565d000-0568d000', 'rw-p', '[heap]', 6340, 6340),
      entry('7f0000000000-7f0000100000', 'r--s', '/dev/shm/segment', 64, 0), // device-backed
      entry('7f0000200000-7f0000300000', 'r-xp', '/usr/lib/libz.so.1', 0, 0), // nothing resident
      entry('7f0000400000-7f0000401000', 'r--s', '/var/lib/berth/meta.db', 4, 0),
      entry('7ffd00000000-7ffd00002000', 'r-xp', '[vdso]', 8, 0),
    ].join('\n');
    assert.deepEqual(cleanFileMappings(smaps), [
      { start: 0x400000n, length: 0xb6f000n - 0x400000n },
      { start: 0xb72000n, length: 0x25fe000n - 0xb72000n },
      { start: 0x7f0000400000n, length: 0x1000n },
    ]);
  });

  it('skips a mapping whose Anonymous line is missing (cannot tell it is clean)', () => {
    const smaps = '00400000-00401000 r-xp 00000000 fe:01 1 /usr/bin/node\nRss: 4 kB\n';
    assert.deepEqual(cleanFileMappings(smaps), []);
  });

  it('handles an empty text', () => {
    assert.deepEqual(cleanFileMappings(''), []);
  });
});
