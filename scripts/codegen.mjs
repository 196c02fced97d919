// Generates TypeScript message codecs and grpc-js service definitions from api/proto
// into api/gen, using the buf binary shipped in the @bufbuild/buf npm package and
// ts-proto as a local plugin, so no protoc has to be installed on the machine.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(repo, 'node_modules', '.bin', name);
const out = join(repo, 'api', 'gen');

// Options chosen for the daemon: int64 as JS numbers (sizes and offsets stay far below 2^53),
// Timestamps as Date, grpc-js service definitions (also reused by the ttrpc transport),
// ESM imports with an explicit .js suffix.
const tsProtoOptions = [
  'outputServices=grpc-js',
  'outputServices=generic-definitions',
  'esModuleInterop=true',
  'useDate=true',
  'env=node',
  'importSuffix=.js',
  'outputJsonMethods=false',
  'outputPartialMethods=true',
  'exportCommonSymbols=false',
  'useOptionals=none',
];

const template = {
  version: 'v2',
  // One plugin run over all files: per-directory runs make buf warn about duplicate outputs.
  plugins: [{ local: bin('protoc-gen-ts_proto'), out, opt: tsProtoOptions, strategy: 'all' }],
};

// Generate into a fresh directory and swap it in, so a concurrent build or test never sees a
// half-written api/gen.
const staging = `${out}.staging-${process.pid}`;
template.plugins[0].out = staging;
rmSync(staging, { recursive: true, force: true });
mkdirSync(staging, { recursive: true });
const templatePath = join(staging, '.buf.gen.json');
// cgroup statistics are uint64 counters and limits that do reach 2^64 - 1 ("max"): those
// messages get bigint fields; everything else keeps numbers.
const runs = [
  { forceLong: 'number', paths: ['--exclude-path', 'cgroups'] },
  { forceLong: 'bigint', paths: ['--path', 'cgroups'] },
];
for (const run of runs) {
  template.plugins[0].opt = [...tsProtoOptions, `forceLong=${run.forceLong}`];
  writeFileSync(templatePath, JSON.stringify(template));
  execFileSync(bin('buf'), ['generate', '--template', templatePath, ...run.paths], {
    cwd: join(repo, 'api', 'proto'),
    stdio: 'inherit',
  });
}
rmSync(templatePath);
rewriteGenerated(staging, (text) => viewBytesWithoutCopy(stripClientConstructors(text)));
const old = `${out}.old-${process.pid}`;
if (existsSync(out)) renameSync(out, old);
renameSync(staging, out);
rmSync(old, { recursive: true, force: true });
console.log(`codegen: wrote ${out}`);

/** Applies `transform` to every generated .ts file below `dir`, writing back what changed. */
function rewriteGenerated(dir, transform) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) { rewriteGenerated(p, transform); continue; }
    if (!name.endsWith('.ts')) continue;
    const text = readFileSync(p, 'utf8');
    const rewritten = transform(text);
    if (rewritten !== text) writeFileSync(p, rewritten);
  }
}

/**
 * berth uses the generated service definitions, never ts-proto's grpc-js client classes. Those
 * are built at import time by makeGenericClientConstructor, which keeps @grpc/grpc-js in every
 * bundle importing a service module (≈ 12 MB of memory in each shim). Dropping the constructor
 * lets the bundler leave grpc-js out where only the definitions and codecs are used.
 */
function stripClientConstructors(text) {
  return text
    .replace(/export const \w+Client = makeGenericClientConstructor\([\s\S]*?\n\};\n/g, '')
    .replace(/^\s*makeGenericClientConstructor,\n/m, '');
}

/**
 * With env=node ts-proto wraps every decoded bytes field, and every serialized message, in
 * Buffer.from(uint8array), which copies: a 1 MiB Content.Write chunk was copied once more on
 * the daemon's main thread before it could be written out. A Buffer view over the same memory
 * is what the code needs (the reader's input and finish()'s output are not reused), so the
 * generated calls are rewritten to make one.
 */
function viewBytesWithoutCopy(text) {
  const rewritten = text
    .replace(/Buffer\.from\(reader\.bytes\(\)\)/g, 'bufferView(reader.bytes())')
    .replace(/Buffer\.from\((\w+)\.encode\(value\)\.finish\(\)\)/g, 'bufferView($1.encode(value).finish())');
  if (rewritten === text) return text;
  const helper = 'const bufferView = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);\n';
  // After the imports: the last import statement ends with `;` and a newline.
  const lastImport = rewritten.lastIndexOf('\nimport ');
  const insertAt = lastImport < 0 ? 0 : rewritten.indexOf(';\n', lastImport) + 2;
  return `${rewritten.slice(0, insertAt)}\n${helper}${rewritten.slice(insertAt)}`;
}
