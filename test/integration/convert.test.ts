// `berth images convert` on a real daemon, beside the real ctr (whose converter runs in the
// client): --uncompress, --oci and both give the same digests, blobs and labels as ctr's; the
// converted image runs; a conversion with nothing to do keeps the digest; errors read as ctr's.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { berth, ctr, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { BUSYBOX, makeBusyboxArchive } from '../helpers/fixtures.js';

let d: TestDaemon;
let archive: string;

before(async () => {
  d = await startDaemon();
  archive = makeBusyboxArchive(join(d.dir, 'busybox.docker.tar'), 'docker');
});
after(async () => {
  await d?.dispose();
});

const ok = async (tool: 'ctr' | 'berth', args: string[], namespace: string) => {
  const r = await (tool === 'ctr' ? ctr : berth)(d.address, args, { namespace });
  assert.equal(r.code, 0, `${tool} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

test('converts as ctr converts: digests, media types, blobs and their labels', async () => {
  const seen: Record<string, string> = {};
  for (const tool of ['ctr', 'berth'] as const) {
    const ns = `convert-${tool}`;
    // Gzip layers (compressed on import), in a Docker manifest: both conversions have work to do.
    await ok('ctr', ['images', 'import', '--compress-blobs', archive], ns);
    const source = (await ok('ctr', ['images', 'ls'], ns)).split('\n')[1]!.split(/\s+/);
    assert.equal(source[1], 'application/vnd.docker.distribution.manifest.v2+json');
    const digests = [];
    for (const [flags, name] of [[['--uncompress'], 'c/bb:un'], [['--oci'], 'c/bb:oci'], [['--oci', '--uncompress'], 'c/bb:both'], [[], 'c/bb:same']] as const) {
      digests.push((await ok(tool, ['images', 'convert', ...flags, BUSYBOX, name], ns)).trim());
    }
    assert.equal(digests[3], source[2], 'nothing to convert: the same target');
    assert.equal(new Set(digests).size, 4);
    seen[tool] = [digests.join(' '), await ok('ctr', ['images', 'ls'], ns), await ok('ctr', ['content', 'ls', '-q'], ns)].join('\n');
    const types = Object.fromEntries((await ok('ctr', ['images', 'ls'], ns)).split('\n').slice(1).filter(Boolean).map((l) => l.split(/\s+/).slice(0, 2)));
    assert.equal(types['c/bb:both'], 'application/vnd.oci.image.manifest.v1+json');
    assert.match(await ok('ctr', ['run', '--rm', 'c/bb:both', `conv-${tool}`, 'echo', 'converted'], ns), /^converted\n$/);
  }
  // Same commands, same results (names, digests, sizes, every blob).
  assert.equal(seen.berth!.replace(/\d+ (seconds?|minutes?) ago|About a minute ago|Less than a second ago/g, ''), seen.ctr!.replace(/\d+ (seconds?|minutes?) ago|About a minute ago|Less than a second ago/g, ''));
});

test('convert refuses what ctr refuses', async () => {
  const missing = await berth(d.address, ['images', 'convert', 'nope:1', 'x:1'], { namespace: 'convert-errors' });
  assert.deepEqual([missing.code, missing.stderr], [1, 'berth: image "nope:1": not found\n']);
  const one = await berth(d.address, ['images', 'convert', 'only-one'], { namespace: 'convert-errors' });
  assert.deepEqual([one.code, one.stderr], [1, 'berth: src and target image need to be specified\n']);
});
