// Runs test files with node's built-in runner (TypeScript through tsx). Node 20's --test does
// not expand globs, so files are discovered here: every *.test.ts under the given folders.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const roots = process.argv.slice(2);
if (!roots.length) roots.push('test/unit', 'test/integration');
const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.test.ts')) files.push(relative(process.cwd(), p));
  }
};
for (const r of roots) statSync(r).isDirectory() ? walk(r) : files.push(r);
if (!files.length) {
  console.error(`run-tests: no test files under ${roots.join(', ')}`);
  process.exit(1);
}
const res = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], { stdio: 'inherit' });
process.exit(res.status ?? 1);
