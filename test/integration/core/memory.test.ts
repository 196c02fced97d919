// The daemon's memory trimmer (core/server/memory.ts) in a separate Node process: the first
// quiet moment after start-up lets go of the file pages start-up mapped, and the process keeps
// working on the code it needs afterwards.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { execa } from 'execa';

const repoRoot = join(import.meta.dirname, '../../..');

describe('memory trimmer', () => {
  it('releases start-up file pages at the first quiet moment', async () => {
    const script = `
      import { readFileSync } from 'node:fs';
      import { createHash } from 'node:crypto';
      import { startMemoryTrimmer } from ${JSON.stringify(join(repoRoot, 'core/server/memory.ts'))};
      const fileKb = () => Number(/^RssFile:\\s+(\\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
      const before = fileKb();
      const ac = new AbortController();
      startMemoryTrimmer({ signal: ac.signal, intervalMs: 50 });
      await new Promise((resolve) => setTimeout(resolve, 400));
      const after = fileKb();
      ac.abort();
      const digest = createHash('sha256').update('still works').digest('hex');
      console.log(JSON.stringify({ before, after, digest }));
    `;
    const { stdout } = await execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot });
    const r = JSON.parse(stdout) as { before: number; after: number; digest: string };
    assert.ok(r.after < r.before / 2, `file-backed resident ${r.before} kB -> ${r.after} kB`);
    assert.equal(r.digest.length, 64);
  });
});
