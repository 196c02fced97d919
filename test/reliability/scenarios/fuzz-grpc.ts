/**
 * Every gRPC method berthd serves, fed malformed and hostile messages over the real socket
 * with raw-byte serializers: random bytes, protobuf with wrong wire types and lying lengths,
 * huge repeated fields, well-formed requests whose every string is a path trick (`..`, `/`,
 * NUL, 1000 and 1 MiB characters), missing and invalid namespaces, and a message over the
 * 16 MiB limit. A call may fail, but only with a status a client can act on: never with a
 * JavaScript exception leaking out as UNKNOWN/INTERNAL, never taking the daemon down (Version
 * answers after every method), and never writing outside the daemon's directories.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { ContainersService } from '../../../api/gen/services/containers/v1/containers.js';
import { ContentService } from '../../../api/gen/services/content/v1/content.js';
import { DiffService } from '../../../api/gen/services/diff/v1/diff.js';
import { EventsService } from '../../../api/gen/services/events/v1/events.js';
import { ImagesService } from '../../../api/gen/services/images/v1/images.js';
import { IntrospectionService } from '../../../api/gen/services/introspection/v1/introspection.js';
import { LeasesService } from '../../../api/gen/services/leases/v1/leases.js';
import { NamespacesService } from '../../../api/gen/services/namespaces/v1/namespace.js';
import { SnapshotsService } from '../../../api/gen/services/snapshots/v1/snapshots.js';
import { TasksService } from '../../../api/gen/services/tasks/v1/tasks.js';
import { VersionDefinition, VersionService } from '../../../api/gen/services/version/v1/version.js';
import { HealthService } from '../../../api/gen/grpc/health/v1/health.js';
import { Request as TtrpcRequest } from '../../../api/gen/ttrpc/ttrpc.js';
import { startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { mountsUnder, sleep } from '../../helpers/reliability.js';

export interface GrpcFuzzOptions {
  /** Inputs of each kind per method. */
  perMethod: number;
  seed: number;
}

interface MethodDef {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (v: any) => Buffer;
  requestDeserialize: (b: Buffer) => any;
}

const SERVICES: Record<string, Record<string, MethodDef>> = {
  containers: ContainersService, content: ContentService, diff: DiffService, events: EventsService, images: ImagesService,
  introspection: IntrospectionService, leases: LeasesService, namespaces: NamespacesService, snapshots: SnapshotsService,
  tasks: TasksService, version: VersionService, health: HealthService,
};

/** Names that would land outside the daemon's directories if any service used them as paths. */
export const MARKER = `berth-escape-${process.pid}`;
const HOSTILE = [
  '', '.', '..', '../..', `../${MARKER}`, `../../../../../../../../../tmp/${MARKER}`, `/tmp/${MARKER}`, '/', 'a/b', 'a\0b', '\0',
  `..\0/${MARKER}`, 'x'.repeat(1000), 'ns-ok', 'default', 'sha256:', `sha256:${'0'.repeat(64)}`, 'labels.x~=(a+)+$', '\u202e\ud83d\ude00', '%2e%2e%2f',
];
const HUGE = 'x'.repeat(1 << 20);

/** JavaScript failures that must never reach a client as a status message. */
const LEAKED_BUG = /is not a function|Cannot read propert|Cannot set propert|is not iterable|undefined is not|null is not|Maximum call stack|Invalid string length|TypeError|RangeError|ReferenceError|Unexpected token|out of memory/;

// ---------------------------------------------------------------- protobuf bytes by hand

function varint(n: bigint): Buffer {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return Buffer.from(out);
}
const tag = (field: number, wt: number) => varint(BigInt((field << 3) | wt));

/** A field of any wire type with a plausible or hostile payload (lengths may lie). */
const wireField: fc.Arbitrary<Buffer> = fc.tuple(
  fc.integer({ min: 1, max: 20 }),
  fc.constantFrom(0, 1, 2, 2, 2, 3, 4, 5, 6, 7),
  fc.oneof(fc.constantFrom(...HOSTILE).map((s) => Buffer.from(s)), fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b))),
  fc.constantFrom(0n, 1n, -1n, 2n ** 63n - 1n, 2n ** 64n - 1n, 4294967296n),
  fc.constantFrom('exact', 'exact', 'exact', 'long', 'short'),
).map(([field, wt, bytes, num, len]) => {
  switch (wt) {
    case 0: return Buffer.concat([tag(field, 0), varint(num)]);
    case 1: return Buffer.concat([tag(field, 1), Buffer.alloc(8, 0xff)]);
    case 5: return Buffer.concat([tag(field, 5), Buffer.alloc(4, 0x7f)]);
    case 2: {
      const n = len === 'exact' ? bytes.length : len === 'long' ? bytes.length + 1000 : Math.max(0, bytes.length - 1);
      return Buffer.concat([tag(field, 2), varint(BigInt(n)), bytes]);
    }
    default: return Buffer.concat([tag(field, wt), bytes.subarray(0, 3)]);
  }
});
const wireMessage = fc.array(wireField, { maxLength: 8 }).map((fs) => Buffer.concat(fs));

/** The same string field repeated many times (huge repeated fields). */
const repeatedMessage = fc.tuple(fc.integer({ min: 1, max: 8 }), fc.constantFrom(...HOSTILE)).map(([field, s]) => {
  const one = Buffer.concat([tag(field, 2), varint(BigInt(Buffer.byteLength(s))), Buffer.from(s)]);
  return Buffer.concat(Array.from({ length: 20_000 }, () => one));
});

/**
 * A request of the method's own type with every reachable field present: decoding a buffer in
 * which fields 1..20 each hold an empty-or-nested message yields the message's full shape
 * (strings, repeated fields and nested messages filled in), which is then given hostile values.
 */
function skeleton(def: MethodDef): any {
  const level = (depth: number): Buffer => {
    const inner = depth > 0 ? level(depth - 1) : Buffer.alloc(0);
    return Buffer.concat(Array.from({ length: 20 }, (_, i) => Buffer.concat([tag(i + 1, 2), varint(BigInt(inner.length)), inner])));
  };
  return def.requestDeserialize(level(2));
}

function hostile(value: any, pick: () => string, key = ''): any {
  if (typeof value === 'string') return pick();
  if (typeof value === 'number') return 0;
  if (typeof value === 'boolean') return true;
  if (value instanceof Date) return new Date(0);
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(pick());
  if (Array.isArray(value)) return value.length ? Array.from({ length: 3 }, () => hostile(value[0], pick)) : value;
  if (value && typeof value === 'object') {
    if (key === 'labels' || key === 'annotations') {
      return { [pick()]: pick(), '../x': 'y', 'containerd.io/gc.ref.content.x': pick(), [`k${'x'.repeat(5000)}`]: 'v' };
    }
    if (key === 'mounts' || key === 'rootfs') return [];
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = hostile(v, pick, k);
    return out;
  }
  return value;
}

// ---------------------------------------------------------------- calls

interface Outcome { code: number; details: string }

function call(client: grpc.Client, def: MethodDef, payload: Buffer, md: grpc.Metadata, deadlineMs = 3000): Promise<Outcome> {
  const ser = (b: Buffer) => b;
  const des = (b: Buffer) => b;
  const deadline = Date.now() + deadlineMs;
  return new Promise((resolve) => {
    const done = (err: grpc.ServiceError | null) => resolve(err ? { code: err.code, details: err.details ?? err.message } : { code: 0, details: '' });
    if (!def.requestStream && !def.responseStream) {
      client.makeUnaryRequest(def.path, ser, des, payload, md, { deadline }, (err) => done(err));
    } else if (!def.requestStream) {
      const s = client.makeServerStreamRequest(def.path, ser, des, payload, md, { deadline });
      let settled = false;
      s.on('data', () => undefined);
      s.on('error', (err: grpc.ServiceError) => { if (!settled) { settled = true; done(err); } });
      s.on('end', () => { if (!settled) { settled = true; done(null); } });
    } else {
      const s = client.makeBidiStreamRequest(def.path, ser, des, md, { deadline });
      let settled = false;
      s.on('data', () => undefined);
      s.on('error', (err: grpc.ServiceError) => { if (!settled) { settled = true; done(err); } });
      s.on('end', () => { if (!settled) { settled = true; done(null); } });
      s.write(payload);
      s.write(payload);
      s.end();
    }
  });
}

function metadata(ns: string | undefined): grpc.Metadata | undefined {
  const md = new grpc.Metadata();
  if (ns === undefined) return md;
  try {
    md.set('containerd-namespace', ns);
    return md;
  } catch {
    // grpc-js refuses header values HTTP/2 cannot carry (NUL, newlines): nothing to send.
    return undefined;
  }
}

/** Whether an outcome is a status a client can act on (not a leaked exception, not silence). */
function acceptable(o: Outcome, def: MethodDef): boolean {
  if (LEAKED_BUG.test(o.details)) return false;
  // Only subscriptions (Events.Subscribe, Health.Watch) may stay open until the deadline.
  if (o.code === grpc.status.DEADLINE_EXCEEDED) return def.responseStream && !def.requestStream && /Subscribe|Watch/.test(def.path);
  if (o.code === grpc.status.INTERNAL) return /^Error deserializing request|Received RST_STREAM|Received message larger/.test(o.details);
  return true;
}

// ---------------------------------------------------------------- the suite

export function grpcFuzzSuite(o: GrpcFuzzOptions): void {
  describe(`bad input: every gRPC method with malformed and hostile messages (seed ${o.seed}, ${o.perMethod} per kind)`, { timeout: 600_000 }, () => {
    let parent: string;
    let d: TestDaemon;
    let client: grpc.Client;
    const tally = new Map<string, number>();
    let calls = 0;

    before(async () => {
      parent = mkdtempSync(join(tmpdir(), 'berth-fuzz-grpc-'));
      d = await startDaemon({ parentDir: parent });
      client = new grpc.Client(`unix://${d.address}`, grpc.credentials.createInsecure());
    });
    after(async () => {
      client?.close();
      await d?.dispose();
      rmSync(parent, { recursive: true, force: true });
    });

    const versionAnswers = async (what: string) => {
      assert.equal(d.process.exitCode, null, `berthd exited after ${what}:\n${d.log().slice(-3000)}`);
      const v = await d.connect('default').service(VersionDefinition).version({}, { timeoutMs: 5000 });
      assert.ok(v.version, `no version after ${what}`);
    };

    const run = async (name: string, def: MethodDef, payload: Buffer, ns: string | undefined = 'fuzz', deadlineMs?: number) => {
      const md = metadata(ns);
      if (!md) return;
      const t0 = Date.now();
      const out = await call(client, def, payload, md, deadlineMs);
      if (process.env.BERTH_FUZZ_TRACE && (out.code === grpc.status.UNKNOWN || out.code === grpc.status.INTERNAL)) console.log('CODE', grpc.status[out.code], def.path, out.details.slice(0, 120).replace(/x{20,}/g, 'x…'));
      if (process.env.BERTH_FUZZ_TRACE && Date.now() - t0 > 200) console.log('SLOW', Date.now() - t0, def.path, name, JSON.stringify(ns)?.slice(0, 30), grpc.status[out.code], out.details.slice(0, 100));
      calls++;
      const k = `${grpc.status[out.code] ?? out.code}`;
      tally.set(k, (tally.get(k) ?? 0) + 1);
      assert.ok(acceptable(out, def), `${def.path} (${name}, namespace ${JSON.stringify(ns)?.slice(0, 40)}) answered ${grpc.status[out.code]}: ${out.details.slice(0, 300)}`);
    };

    for (const [service, methods] of Object.entries(SERVICES)) {
      it(`${service}: random bytes, wrong wire types, huge repeats, hostile strings, bad namespaces`, async () => {
        for (const [name, def] of Object.entries(methods)) {
          // Subscriptions never end by themselves: a short deadline ends them.
          const deadline = /Subscribe|Watch/.test(def.path) ? 150 : 3000;
          const random = fc.sample(fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b)), { numRuns: o.perMethod, seed: o.seed });
          for (const b of random) await run('random bytes', def, b, 'fuzz', deadline);
          for (const b of fc.sample(wireMessage, { numRuns: o.perMethod, seed: o.seed + 1 })) await run('wire types', def, b, 'fuzz', deadline);
          for (const b of fc.sample(repeatedMessage, { numRuns: Math.max(1, Math.floor(o.perMethod / 3)), seed: o.seed + 2 })) await run('huge repeated field', def, b, 'fuzz', deadline);
          const shape = skeleton(def);
          const picks = fc.sample(fc.array(fc.constantFrom(...HOSTILE), { minLength: 50, maxLength: 50 }), { numRuns: o.perMethod, seed: o.seed + 3 });
          for (const [i, list] of picks.entries()) {
            let j = 0;
            const req = hostile(shape, () => list[j++ % list.length]!);
            let bytes: Buffer;
            try {
              bytes = def.requestSerialize(req);
            } catch {
              continue;
            }
            await run('hostile strings', def, bytes, i % 2 ? 'fuzz' : 'default', deadline);
          }
          let k = 0;
          const huge = hostile(shape, () => (k++ === 0 ? HUGE : 'h'));
          await run('1 MiB string', def, def.requestSerialize(huge), 'fuzz', deadline);
          const plain = (() => {
            try {
              return def.requestSerialize(hostile(shape, () => 'ok'));
            } catch {
              return Buffer.alloc(0);
            }
          })();
          for (const ns of [undefined, '', '..', '../x', 'a/b', 'a\0b', 'x'.repeat(1000), `../../../../tmp/${MARKER}`]) await run('namespace', def, plain, ns, deadline);
          await versionAnswers(def.path);
        }
      });
    }

    it('a message over 16 MiB is RESOURCE_EXHAUSTED, and the daemon goes on', async () => {
      const big = Buffer.concat([tag(1, 2), varint(BigInt(17 << 20)), Buffer.alloc(17 << 20, 0x61)]);
      for (const def of [ContainersService.create, ContentService.write, SnapshotsService.prepare, ImagesService.create] as MethodDef[]) {
        const out = await call(client, def, big, metadata('fuzz')!, 15_000);
        assert.equal(out.code, grpc.status.RESOURCE_EXHAUSTED, `${def.path}: ${grpc.status[out.code]} ${out.details}`);
      }
      await versionAnswers('oversized messages');
    });

    it('the ttrpc socket (shim events): junk, lying frame lengths and hostile requests leave the daemon answering', async () => {
      const ttrpc = `${d.address}.ttrpc`;
      const frame = (payload: Buffer, type = 1, length = payload.length, streamId = 1) => {
        const h = Buffer.alloc(10);
        h.writeUInt32BE(length >>> 0, 0);
        h.writeUInt32BE(streamId >>> 0, 4);
        h.writeUInt8(type, 8);
        return Buffer.concat([h, payload]);
      };
      const request = (service: string, method: string, payload: Buffer, ns?: string) =>
        TtrpcRequest.encode({ service, method, payload, timeoutNano: 0, metadata: ns === undefined ? [] : [{ key: 'containerd-namespace-ttrpc', value: ns }] }).finish();
      const inputs: Buffer[] = [
        ...fc.sample(fc.uint8Array({ maxLength: 4096 }).map((b) => Buffer.from(b)), { numRuns: o.perMethod * 4, seed: o.seed + 9 }),
        frame(Buffer.alloc(16), 1, 0xffffffff),
        frame(Buffer.alloc(16), 1, (4 << 20) + 1),
        frame(Buffer.alloc(0), 7),
        frame(Buffer.from(request('containerd.services.events.ttrpc.v1.Events', 'Forward', Buffer.from('junk')))),
        frame(Buffer.from(request('containerd.services.events.ttrpc.v1.Events', 'Forward', Buffer.alloc(0), '../..'))),
        frame(Buffer.from(request('x'.repeat(100_000), HOSTILE[5]!, Buffer.alloc(0)))),
        ...fc.sample(fc.tuple(fc.constantFrom(...HOSTILE), fc.constantFrom(...HOSTILE), wireMessage), { numRuns: o.perMethod * 4, seed: o.seed + 10 })
          .map(([s, m, p]) => frame(Buffer.from(request(s, m, p, s)))),
      ];
      for (const bytes of inputs) {
        await new Promise<void>((resolve) => {
          const sock = connect(ttrpc);
          const timer = setTimeout(() => sock.destroy(), 100);
          sock.on('connect', () => sock.write(bytes));
          sock.on('data', () => undefined);
          sock.on('error', () => undefined);
          sock.on('close', () => { clearTimeout(timer); resolve(); });
        });
      }
      await versionAnswers('ttrpc junk');
    });

    it('nothing was written outside the daemon directories, nothing is left mounted, and berthd still answers', async (t) => {
      await sleep(200);
      assert.deepEqual(readdirSync(parent), [d.dir.slice(parent.length + 1)], 'the temp parent holds only the daemon directory');
      for (const p of [`/tmp/${MARKER}`, `/${MARKER}`, join(d.dir, '..', MARKER)]) assert.ok(!existsSync(p), `${p} exists`);
      assert.deepEqual(mountsUnder(d.dir), []);
      await versionAnswers('the whole run');
      const summary = [...tally].sort().map(([k, v]) => `${k}=${v}`).join(' ');
      t.diagnostic(`grpc fuzz: ${calls} calls; outcomes ${summary}`);
    });
  });
}
