// `berth oci spec` prints the default runtime spec byte for byte as the real `ctr oci spec`
// does (containerd's defaults, its JSON layout, the namespace in the cgroups path).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { berth, ctr } from '../../helpers/daemon.js';

test('oci spec matches the real ctr in every namespace', async () => {
  // No daemon is involved: the address is never dialled.
  const address = '/nonexistent/berth.sock';
  for (const namespace of ['default', 'team-a']) {
    const ours = await berth(address, ['oci', 'spec'], { namespace });
    const theirs = await ctr(address, ['oci', 'spec'], { namespace });
    assert.equal(ours.code, 0, ours.stderr);
    assert.equal(theirs.code, 0, theirs.stderr);
    assert.equal(ours.stdout, theirs.stdout);
    assert.equal(JSON.parse(ours.stdout).linux.cgroupsPath, `/${namespace}`);
  }
});
