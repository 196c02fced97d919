import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mountCommandLine, mountLookupCommand, shellQuote } from '../../../../core/mount/format.js';
import type { Mount } from '../../../../core/mount/types.js';

const overlay: Mount = {
  type: 'overlay',
  source: 'overlay',
  options: ['index=off', 'workdir=/s/3/work', 'upperdir=/s/3/fs', 'lowerdir=/s/2/fs:/s/1/fs'],
};
const bind: Mount = { type: 'bind', source: '/s/1/fs', options: ['rbind', 'ro'] };

describe('mountLookupCommand', () => {
  it('renders like ctr snapshots mounts', () => {
    assert.equal(
      mountLookupCommand([overlay], '/tmp/x'),
      'mount -t overlay overlay /tmp/x -o index=off,workdir=/s/3/work,upperdir=/s/3/fs,lowerdir=/s/2/fs:/s/1/fs\n',
    );
    assert.equal(mountLookupCommand([bind], '/tmp/x'), 'mount -t bind /s/1/fs /tmp/x -o rbind,ro\n');
  });

  it('prints one line per mount and nothing for none', () => {
    assert.equal(mountLookupCommand([bind, bind], '/t').split('\n').length, 3);
    assert.equal(mountLookupCommand([], '/t'), '');
  });

  it('keeps -o even without options, as ctr does', () => {
    assert.equal(mountCommandLine({ type: 'tmpfs', source: 'tmpfs', options: [] }, '/t'), 'mount -t tmpfs tmpfs /t -o ');
  });

  it('places a mount with a target below the root', () => {
    assert.equal(
      mountCommandLine({ type: 'tmpfs', source: 'tmpfs', target: '../../dev', options: ['size=1m'] }, '/r'),
      'mount -t tmpfs tmpfs /r/dev -o size=1m',
    );
  });

  it('quotes on request', () => {
    assert.equal(
      mountCommandLine({ type: 'bind', source: "/it's here", options: ['bind'] }, '/t t', { quote: true }),
      `mount -t bind '/it'\\''s here' '/t t' -o bind`,
    );
    assert.equal(shellQuote(''), "''");
    assert.equal(shellQuote('lowerdir=/a:/b,ro'), 'lowerdir=/a:/b,ro');
  });
});
