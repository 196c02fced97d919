// Bundles the entry points with esbuild, one self-contained CommonJS file per program
// (dist/<name>.cjs), each run through a V8 code cache by a small stub (dist/<name>.js,
// see cmd/launcher.ts). dist/ is CommonJS throughout (its own package.json says so), and so
// are the bin/ launchers: a CommonJS entry loads synchronously, without Node's ESM loader,
// which is costlier to start and reads files on libuv's thread pool (the daemon must tune
// malloc before that pool starts, see core/sys/malloc.ts). One file instead of ESM chunks saves the module loader's per-file
// resolution and linking; the code cache saves most of the compilation. Code that only some
// commands need stays behind `await import()`, which in a single bundle is a lazily evaluated
// function: parsed (cheaply, pre-parsed only) but neither compiled nor run until called.
// Native addons stay outside the bundle: koffi whole (it is loaded by path, core/sys/syscalls.ts),
// better-sqlite3 only its .node file (its JavaScript is bundled, core/sys/sqlite.ts hands it
// the addon's path). After the build, each program is run once (a daemon boot on a
// temporary root and a CLI call against it) to write the code caches.
import { build } from 'esbuild';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
let revision = 'dev';
try {
  revision = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: repo, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
} catch { /* not a git checkout */ }

const entries = {
  berthd: 'cmd/berthd/main.ts',
  berth: 'cmd/berth/main.ts',
  'containerd-shim-berth-v2': 'cmd/containerd-shim-berth-v2/main.ts',
};
const entryPoints = Object.fromEntries(Object.entries(entries).filter(([, p]) => existsSync(join(repo, p))).map(([k, p]) => [k, join(repo, p)]));

// Which code cache a run uses (see LaunchOptions.variant): the shim's short-lived actions and
// its resident server run different code.
const variants = {
  'containerd-shim-berth-v2': `(() => { const a = process.argv.slice(2); const last = a[a.length - 1];
  return last === 'start' || last === 'delete' ? last : a.some((x) => /^--?v(=|$)/.test(x)) ? 'version' : 'serve'; })()`,
};

// Build into a staging directory and swap it in: tests running meanwhile keep a whole dist/.
const dist = join(repo, 'dist');
const staging = `${dist}.staging-${process.pid}`;
rmSync(staging, { recursive: true, force: true });
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  minifySyntax: true,
  minifyWhitespace: true,
  // Shorter source to read, hash and pre-parse; keepNames keeps class and function names
  // (error names, stack traces) as they are in the source.
  minifyIdentifiers: true,
  keepNames: true,
  logLevel: 'warning',
};

// winston's exception and rejection handlers create a debug logger from @dabh/diagnostics,
// whose package picks its development build unless NODE_ENV is "production". That build
// loads tty, colour tables and an adapter stack at start-up (~4 ms of every daemon boot) for
// output that appears only with DEBUG=winston:*, which is winston's own debugging. The
// production build (a no-op logger) is what goes into the bundles.
const quietDiagnostics = {
  name: 'quiet-diagnostics',
  setup(b) {
    b.onResolve({ filter: /^@dabh\/diagnostics$/ }, async (args) => {
      const resolved = await b.resolve('@dabh/diagnostics/node/production.js', { resolveDir: args.resolveDir, kind: args.kind });
      return resolved.errors.length ? undefined : { path: resolved.path };
    });
  },
};
// Node builtins the programs import at the top of modules but seldom use while starting
// (hashing, compression, worker threads): each is a module graph Node compiles when it is
// first required (~5 ms of a daemon boot together). They are bound to a stand-in that
// requires the real module on first use, so a process that has not hashed or compressed yet
// has not loaded them. The stand-in knows the module's export names (taken here, from the
// Node that builds and will run the bundle) so that esbuild's interop helpers, which list
// them for `import * as` and default imports, do not load the module early.
const LAZY_BUILTINS = /^(node:)?(crypto|zlib|worker_threads)$/;
const nodeRequire = createRequire(import.meta.url);
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(b) {
    b.onResolve({ filter: LAZY_BUILTINS }, (args) => (args.namespace === 'lazy-builtin'
      ? { path: args.path, external: true } // the stand-in's own require: the real module
      : { path: args.path.replace(/^node:/, ''), namespace: 'lazy-builtin' }));
    b.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({
      loader: 'js',
      contents: `
        const names = ${JSON.stringify(Object.getOwnPropertyNames(nodeRequire(`node:${args.path}`)))};
        let real;
        const load = () => (real ??= require(${JSON.stringify(`node:${args.path}`)}));
        module.exports = new Proxy({}, {
          get: (_, key) => load()[key],
          has: (_, key) => (real ? key in real : names.includes(key)),
          ownKeys: () => (real ? Reflect.ownKeys(real) : [...names]),
          getOwnPropertyDescriptor: (_, key) => {
            if (!real) return names.includes(key) ? { configurable: true, enumerable: true, writable: true, value: undefined } : undefined;
            const d = Reflect.getOwnPropertyDescriptor(real, key);
            return d && { ...d, configurable: true };
          },
        });`,
    }));
  },
};
await build({
  ...common,
  entryPoints,
  outdir: staging,
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  external: ['koffi'],
  plugins: [quietDiagnostics, lazyBuiltins],
  define: { __BERTH_REVISION__: JSON.stringify(revision), 'import.meta.url': '__berthImportMetaUrl' },
  // The sources are ES modules; the few that need their own URL (createRequire) get the bundle's.
  banner: { js: "var __berthImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
});
await build({ ...common, entryPoints: { launcher: join(repo, 'cmd/launcher.ts') }, outdir: staging, format: 'cjs', sourcemap: false });
// Checks of each bundle before it ships:
// - The launcher compiles it with vm.Script, which has no module loader: an import() esbuild
//   leaves in place (of a Node builtin, say) throws "A dynamic import callback was not
//   specified" when it runs. Refuse such a bundle instead of shipping a command that fails later.
// - The launcher reads it as Latin-1 (half the time of UTF-8 decoding for 1.5 MB,
//   cmd/launcher.ts): only right while the bundle is ASCII. esbuild escapes non-ASCII characters
//   in strings and identifiers but not inside regular expression literals.
for (const name of Object.keys(entryPoints)) {
  const text = readFileSync(join(staging, `${name}.cjs`), 'utf8');
  const found = /\bimport\(\s*["'`]([^"'`]+)/.exec(text);
  if (found) throw new Error(`build: ${name}.cjs keeps a dynamic import("${found[1]}"); use a static import or require for it`);
  const at = text.search(/[^\x00-\x7f]/);
  if (at !== -1) throw new Error(`build: ${name}.cjs is not ASCII at offset ${at}: ${JSON.stringify(text.slice(Math.max(0, at - 40), at + 20))}; escape the character in the source (\\uXXXX)`);
}
writeFileSync(join(staging, 'package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);
for (const name of Object.keys(entryPoints)) {
  const buildId = createHash('sha256').update(readFileSync(join(staging, `${name}.cjs`))).digest('hex').slice(0, 16);
  const variant = variants[name] ? `, variant: ${variants[name]}` : '';
  writeFileSync(join(staging, `${name}.js`), [
    `// ${name}: runs ${name}.cjs with a V8 code cache (cmd/launcher.ts). Generated by scripts/build.mjs.`,
    `require('./launcher.js').launch(__dirname, { name: ${JSON.stringify(name)}, buildId: ${JSON.stringify(buildId)}${variant} });`,
    '',
  ].join('\n'));
}
const old = `${dist}.old-${process.pid}`;
if (existsSync(dist)) renameSync(dist, old);
renameSync(staging, dist);
rmSync(old, { recursive: true, force: true });
console.log(`build: ${Object.keys(entryPoints).join(', ')} -> dist/ (${readdirSync(dist).length} entries)`);

if (process.env.BERTH_CODE_CACHE !== '0') await warmUp();

/**
 * Writes the code caches: boots berthd on a temporary root, runs `berth version` against it,
 * stops it. Best effort: without root some plugins skip, which only makes the cache smaller.
 */
async function warmUp() {
  const tmp = mkdtempSync(join(tmpdir(), 'berth-build-'));
  const sock = join(tmp, 'berthd.sock');
  const env = { ...process.env, CONTAINERD_ADDRESS: '', CONTAINERD_NAMESPACE: '' };
  const daemon = spawn(process.execPath, [join(repo, 'bin/berthd.js'), '--root', join(tmp, 'root'), '--state', join(tmp, 'state'), '--address', sock],
    { stdio: 'ignore', env });
  const exited = new Promise((res) => daemon.once('exit', res));
  try {
    const deadline = Date.now() + 15_000;
    while (!existsSync(sock) && daemon.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (existsSync(sock)) {
      try {
        execFileSync(process.execPath, [join(repo, 'bin/berth.js'), '-a', sock, 'version'], { stdio: 'ignore', env, timeout: 15_000 });
      } catch { /* the cache is still written */ }
    }
  } finally {
    daemon.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  }
  const made = existsSync(join(dist, 'cache')) ? readdirSync(join(dist, 'cache')).length : 0;
  console.log(`build: ${made} code cache file(s) in dist/cache/`);
}
