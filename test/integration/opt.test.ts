// The opt plugin inside a real berthd: it creates <path>/bin and <path>/lib, exports the path
// to introspection (what `ctr install` reads), and puts <path>/bin on the daemon's PATH so a
// runtime shim installed there is found by `ctr run --runtime io.containerd.<name>.<version>`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO, berth, ctr, startDaemon, type TestDaemon } from '../helpers/daemon.js';

let d: TestDaemon;
let opt: string;

before(async () => {
  d = await startDaemon();
  opt = join(d.dir, 'opt');
});
after(async () => { await d?.dispose(); });

describe('opt plugin in berthd', () => {
  it('creates bin/ and lib/ under the configured path', () => {
    for (const sub of ['bin', 'lib']) {
      const st = statSync(join(opt, sub));
      assert.ok(st.isDirectory());
      assert.equal(st.mode & 0o777, 0o711);
    }
  });

  it('exports the path, as ctr and berth show it', async () => {
    for (const run of [ctr, berth]) {
      const r = await run(d.address, ['plugins', 'ls', '-d', 'id==opt']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Type:\s+io\.containerd\.internal\.v1\nID:\s+opt\nExports:\s*\n\s+path\s+\S+/);
      assert.ok(r.stdout.includes(opt));
    }
  });

  it('makes shims in <path>/bin reachable for the runtime', async () => {
    const archive = join(d.dir, 'busybox.oci.tar');
    execFileSync(process.execPath, [join(REPO, 'scripts/make-image.mjs'), '--out', archive]);
    assert.equal((await ctr(d.address, ['images', 'import', archive])).code, 0);
    const marker = join(d.dir, 'shim-was-run');
    const shim = join(opt, 'bin', 'containerd-shim-optcheck-v1');
    writeFileSync(shim, `#!/bin/sh\necho "$@" >> ${marker}\necho "optcheck shim refuses to start" >&2\nexit 1\n`);
    chmodSync(shim, 0o755);
    const r = await ctr(d.address, ['run', '--runtime', 'io.containerd.optcheck.v1', 'docker.io/library/busybox:latest', 'optcheck', 'true']);
    assert.notEqual(r.code, 0, 'the fake shim does not start anything');
    assert.ok(existsSync(marker), `shim in ${opt}/bin was not run: ${r.stderr}`);
    assert.match(readFileSync(marker, 'utf8'), /\bstart\b/);
    await ctr(d.address, ['containers', 'rm', 'optcheck']);
  });
});
