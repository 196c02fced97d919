// Generates TypeScript message codecs and grpc-js service definitions from api/proto
// into api/gen, using the buf binary shipped in the @bufbuild/buf npm package and
// ts-proto as a local plugin, so no protoc has to be installed on the machine.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
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
  'forceLong=number',
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

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const templatePath = join(out, '.buf.gen.json');
writeFileSync(templatePath, JSON.stringify(template));
execFileSync(bin('buf'), ['generate', '--template', templatePath], {
  cwd: join(repo, 'api', 'proto'),
  stdio: 'inherit',
});
rmSync(templatePath);
console.log(`codegen: wrote ${out}`);
