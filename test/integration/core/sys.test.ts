import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, fstatSync, rmdirSync, statfsSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { execa } from 'execa';
import { isNotFound } from '../../../core/errdefs/errdefs.js';
import * as sys from '../../../core/sys/syscalls.js';
import { tempDir } from '../../helpers/tmp.js';

const TMPFS_MAGIC = 0x01021994;
const repoRoot = join(import.meta.dirname, '../../..');
const syscallsModule = join(repoRoot, 'core/sys/syscalls.ts');

describe('syscalls errors', () => {
  it('umount2 of a non-mount point is a Node-style EINVAL naming the path', () => {
    const dir = tempDir('berth-sys-');
    try {
      assert.throws(() => sys.umount2(dir), (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'EINVAL');
        assert.equal(err.errno, -22);
        assert.equal(err.syscall, 'umount2');
        assert.equal(err.path, dir);
        assert.match(err.message, new RegExp(`^EINVAL: .*umount2 '${dir}'`));
        return true;
      });
    } finally {
      rmdirSync(dir);
    }
  });

  it('mount onto a missing directory is ENOENT, which errdefs classifies as not found', () => {
    assert.throws(() => sys.mount('tmpfs', '/nonexistent/berth/target', 'tmpfs', 0n, null), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'ENOENT');
      assert.equal(err.syscall, 'mount');
      assert.ok(isNotFound(err));
      return true;
    });
  });

  it('rejects negative flags before calling the kernel', () => {
    assert.throws(() => sys.mount(null, '/', null, -1, null), RangeError);
  });

  it('reports the page size', () => {
    const size = sys.pageSize();
    assert.ok(size >= 4096 && (size & (size - 1)) === 0, `page size ${size}`);
  });
});

describe('tmpfs through raw mount/umount2', () => {
  const dir = tempDir('berth-sys-tmpfs-');
  after(() => {
    try { sys.umount2(dir, 2 /* MNT_DETACH */); } catch { /* not mounted */ }
    rmdirSync(dir);
  });

  it('mounts and unmounts', () => {
    sys.mount('tmpfs', dir, 'tmpfs', 0, 'size=1m,mode=0700');
    assert.equal(statfsSync(dir).type, TMPFS_MAGIC);
    writeFileSync(join(dir, 'f'), 'x');
    sys.umount2(dir, 0);
    assert.equal(existsSync(join(dir, 'f')), false, 'the file lived on the tmpfs');
    assert.throws(() => sys.umount2(dir, 0), { code: 'EINVAL' });
  });
});

describe('pidfd', () => {
  it('opens a pidfd for a child and signals it; ESRCH once reaped', async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    await once(child, 'spawn');
    const pidfd = sys.pidfdOpen(child.pid!);
    try {
      assert.ok(Number.isInteger(pidfd) && pidfd > 2, `pidfd ${pidfd}`);
      assert.ok(fstatSync(pidfd), 'the fd is open');
      const exited = once(child, 'exit');
      sys.pidfdSendSignal(pidfd, 'SIGTERM');
      const [code, signal] = await exited;
      assert.equal(code, null);
      assert.equal(signal, 'SIGTERM');
      assert.throws(() => sys.pidfdSendSignal(pidfd, 0), { code: 'ESRCH', syscall: 'pidfd_send_signal' });
    } finally {
      closeSync(pidfd);
    }
  });

  it('fails with ESRCH for a pid that does not exist', () => {
    assert.throws(() => sys.pidfdOpen(2 ** 22 + 12345), { code: 'ESRCH', syscall: 'pidfd_open' });
  });
});

describe('prctl child subreaper (in a separate process)', () => {
  it('sets the flag and orphans are re-parented to the subreaper', async () => {
    // The child becomes a subreaper, lets a shell leave an orphaned sleep behind, and reports
    // the orphan's parent. Run out of process so the test runner itself stays unchanged.
    const script = `
      import { readFileSync } from 'node:fs';
      import { execFileSync } from 'node:child_process';
      import * as sys from ${JSON.stringify(syscallsModule)};
      const before = sys.prctlGetChildSubreaper();
      sys.prctlSetChildSubreaper();
      const orphan = Number(execFileSync('sh', ['-c', 'sleep 30 >/dev/null 2>&1 & echo $!'], { encoding: 'utf8' }).trim());
      const ppid = Number(/^PPid:\\s+(\\d+)/m.exec(readFileSync('/proc/' + orphan + '/status', 'utf8'))[1]);
      process.kill(orphan, 'SIGKILL');
      console.log(JSON.stringify({ before, after: sys.prctlGetChildSubreaper(), self: process.pid, ppid }));
    `;
    const { stdout } = await execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot });
    const result = JSON.parse(stdout) as { before: boolean; after: boolean; self: number; ppid: number };
    assert.equal(result.before, false);
    assert.equal(result.after, true);
    assert.equal(result.ppid, result.self);
  });
});

describe('releasing clean file pages (in a separate process)', () => {
  it('unmaps the resident file pages and the process keeps working on them', async () => {
    // Out of process: the child drops its own code pages, then runs code that needs them back.
    const mallocModule = join(repoRoot, 'core/sys/malloc.ts');
    const script = `
      import { readFileSync } from 'node:fs';
      import { createHash } from 'node:crypto';
      import { gzipSync, gunzipSync } from 'node:zlib';
      import { releaseCleanFilePages } from ${JSON.stringify(mallocModule)};
      const fileKb = () => Number(/^RssFile:\\s+(\\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
      const before = fileKb();
      const released = releaseCleanFilePages(() => readFileSync('/proc/self/smaps', 'utf8'));
      const after = fileKb();
      const digest = createHash('sha256').update(gunzipSync(gzipSync(Buffer.from('berth')))).digest('hex');
      console.log(JSON.stringify({ before, after, released, digest }));
    `;
    const { stdout } = await execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot });
    const r = JSON.parse(stdout) as { before: number; after: number; released: number; digest: string };
    assert.ok(r.released > 0, `released ${r.released} mappings`);
    assert.ok(r.after < r.before / 2, `file-backed resident ${r.before} kB -> ${r.after} kB`);
    assert.equal(r.digest, createHash('sha256').update('berth').digest('hex'));
  });
});
