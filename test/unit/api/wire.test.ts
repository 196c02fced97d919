// Wire-format checks for the generated containerd 1.6 API code: field numbers that
// are easy to get wrong, and the gRPC/ttrpc paths of the service definitions.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { Descriptor } from '../../../api/gen/types/descriptor.js';
import { Process, Status } from '../../../api/gen/types/task/task.js';
import { Image } from '../../../api/gen/services/images/v1/images.js';
import { ImageCreate } from '../../../api/gen/events/image.js';
import { TaskExit } from '../../../api/gen/events/task.js';
import { CreateTaskRequest as TasksCreateTaskRequest, TasksService } from '../../../api/gen/services/tasks/v1/tasks.js';
import { WriteAction, WriteContentRequest, ContentService } from '../../../api/gen/services/content/v1/content.js';
import { Plugin, IntrospectionService } from '../../../api/gen/services/introspection/v1/introspection.js';
import { Envelope as GrpcEnvelope, EventsService as GrpcEventsService } from '../../../api/gen/services/events/v1/events.js';
import {
  Envelope as TtrpcEnvelope,
  ForwardRequest as TtrpcForwardRequest,
  EventsService as TtrpcEventsService,
} from '../../../api/gen/services/ttrpc/events/v1/events.js';
import { VersionService, VersionResponse } from '../../../api/gen/services/version/v1/version.js';
import { StateResponse as V2StateResponse, TaskService } from '../../../api/gen/runtime/v2/task/shim.js';
import { CreateTaskRequest as V1CreateTaskRequest, ShimService } from '../../../api/gen/runtime/v1/shim/shim.js';
import { HealthService, HealthCheckResponse, HealthCheckResponse_ServingStatus } from '../../../api/gen/grpc/health/v1/health.js';
import { Kind, Info as SnapshotInfo, SnapshotsService } from '../../../api/gen/services/snapshots/v1/snapshots.js';
import { ContainersService } from '../../../api/gen/services/containers/v1/containers.js';
import { Options as RuncOptions, CheckpointOptions as RuncCheckpointOptions } from '../../../api/gen/runc/options/oci.js';
import { CheckpointOptions as LinuxCheckpointOptions } from '../../../api/gen/runc/runctypes/runc.js';
import { Options as RuntimeOptions } from '../../../api/gen/runtimeoptions/v1/api.js';

// ---- a tiny protobuf reader, independent of the generated code ----

type WireField = { field: number; wire: number; value: bigint | Uint8Array };

function readVarint(buf: Uint8Array, pos: number): [bigint, number] {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const b = buf[pos++];
    assert.ok(b !== undefined, 'truncated varint');
    result |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return [result, pos];
    shift += 7n;
  }
}

/** Top-level fields of an encoded message, in wire order. */
function fields(buf: Uint8Array): WireField[] {
  const out: WireField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const [tag, p1] = readVarint(buf, pos);
    pos = p1;
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (wire === 0) {
      const [v, p2] = readVarint(buf, pos);
      out.push({ field, wire, value: v });
      pos = p2;
    } else if (wire === 2) {
      const [len, p2] = readVarint(buf, pos);
      const end = p2 + Number(len);
      out.push({ field, wire, value: buf.subarray(p2, end) });
      pos = end;
    } else if (wire === 1) {
      out.push({ field, wire, value: buf.subarray(pos, pos + 8) });
      pos += 8;
    } else if (wire === 5) {
      out.push({ field, wire, value: buf.subarray(pos, pos + 4) });
      pos += 4;
    } else {
      assert.fail(`unexpected wire type ${wire}`);
    }
  }
  return out;
}

const tags = (buf: Uint8Array) => fields(buf).map((f) => [f.field, f.wire] as const);
const one = (buf: Uint8Array, n: number) => {
  const hits = fields(buf).filter((f) => f.field === n);
  assert.equal(hits.length, 1, `expected exactly one field ${n}`);
  return hits[0]!.value;
};
const text = (v: bigint | Uint8Array) => new TextDecoder().decode(v as Uint8Array);

// Go's time.Time{} as containerd puts it on the wire.
const GO_ZERO_TIME = new Date(-62135596800 * 1000);

describe('containerd.types', () => {
  it('Descriptor: annotations is field 5, field 4 is never written', () => {
    const buf = Descriptor.encode(
      Descriptor.fromPartial({ mediaType: 'm', digest: 'sha256:aa', size: 3, annotations: { a: 'b' } }),
    ).finish();
    assert.deepEqual(tags(buf), [[1, 2], [2, 2], [3, 0], [5, 2]]);
    assert.equal(buf[buf.indexOf(0x18) + 1], 3); // size varint
    const entry = fields(one(buf, 5) as Uint8Array);
    assert.deepEqual(entry.map((e) => [e.field, text(e.value)]), [[1, 'a'], [2, 'b']]);
  });

  it('Process: exited_at is field 10 and Go zero time survives', () => {
    const p = Process.fromPartial({ id: 'c1', pid: 42, status: Status.STOPPED, exitStatus: 137, exitedAt: GO_ZERO_TIME });
    const buf = Process.encode(p).finish();
    assert.deepEqual(tags(buf), [[2, 2], [3, 0], [4, 0], [9, 0], [10, 2]]);
    assert.equal(one(buf, 4), 3n);
    const ts = fields(one(buf, 10) as Uint8Array);
    // seconds is a negative int64: two's complement in a 10-byte varint.
    assert.equal(BigInt.asIntN(64, ts[0]!.value as bigint), -62135596800n);
    assert.equal(Process.decode(buf).exitedAt?.getTime(), GO_ZERO_TIME.getTime());
  });

  it('Status enum values', () => {
    assert.deepEqual(
      [Status.UNKNOWN, Status.CREATED, Status.RUNNING, Status.STOPPED, Status.PAUSED, Status.PAUSING],
      [0, 1, 2, 3, 4, 5],
    );
  });
});

describe('services', () => {
  it('Image: created_at = 7, updated_at = 8', () => {
    const d = new Date(1_700_000_000_000);
    const buf = Image.encode(
      Image.fromPartial({ name: 'docker.io/library/x:1', target: { digest: 'sha256:aa' }, createdAt: d, updatedAt: d }),
    ).finish();
    assert.deepEqual(tags(buf), [[1, 2], [3, 2], [7, 2], [8, 2]]);
    assert.equal(buf.includes(0x3a), true); // tag byte for (7, LEN)
  });

  it('tasks v1 CreateTaskRequest: rootfs = 3, no field 2', () => {
    const buf = TasksCreateTaskRequest.encode(
      TasksCreateTaskRequest.fromPartial({
        containerId: 'c',
        rootfs: [{ type: 'overlay', source: 'overlay', options: ['ro'] }],
        stdin: '/in',
        terminal: true,
        options: { typeUrl: 'containerd.runc.v1.Options', value: Buffer.alloc(0) },
        runtimePath: '/bin/shim',
      }),
    ).finish();
    assert.deepEqual(tags(buf), [[1, 2], [3, 2], [4, 2], [7, 0], [9, 2], [10, 2]]);
  });

  it('WriteContentRequest: labels = 7, action enum', () => {
    const buf = WriteContentRequest.encode(
      WriteContentRequest.fromPartial({
        action: WriteAction.COMMIT,
        ref: 'r',
        total: 10,
        expected: 'sha256:aa',
        offset: 5,
        data: Buffer.from([1, 2]),
        labels: { k: 'v' },
      }),
    ).finish();
    assert.deepEqual(tags(buf), [[1, 0], [2, 2], [3, 0], [4, 2], [5, 0], [6, 2], [7, 2]]);
    assert.equal(one(buf, 1), 2n);
    assert.deepEqual([WriteAction.STAT, WriteAction.WRITE, WriteAction.COMMIT], [0, 1, 2]);
  });

  it('introspection Plugin: init_err = 7 (google.rpc.Status)', () => {
    const buf = Plugin.encode(
      Plugin.fromPartial({
        type: 'io.containerd.snapshotter.v1',
        id: 'btrfs',
        platforms: [{ os: 'linux', architecture: 'amd64' }],
        exports: { root: '/x' },
        capabilities: ['remap-ids'],
        initErr: { code: 9, message: 'skip plugin' },
      }),
    ).finish();
    assert.deepEqual(tags(buf), [[1, 2], [2, 2], [4, 2], [5, 2], [6, 2], [7, 2]]);
    const status = fields(one(buf, 7) as Uint8Array);
    assert.deepEqual(status.map((f) => f.field), [1, 2]);
    assert.equal(status[0]!.value, 9n);
    assert.equal(text(status[1]!.value), 'skip plugin');
  });

  it('snapshots Info and Kind', () => {
    assert.deepEqual([Kind.UNKNOWN, Kind.VIEW, Kind.ACTIVE, Kind.COMMITTED], [0, 1, 2, 3]);
    const buf = SnapshotInfo.encode(SnapshotInfo.fromPartial({ name: 'n', parent: 'p', kind: Kind.COMMITTED, labels: { a: 'b' } })).finish();
    assert.deepEqual(tags(buf), [[1, 2], [2, 2], [3, 0], [6, 2]]);
  });

  it('VersionResponse: version = 1, revision = 2', () => {
    const buf = VersionResponse.encode({ version: '1.6.20', revision: 'r' }).finish();
    assert.deepEqual(tags(buf), [[1, 2], [2, 2]]);
  });

  it('health: SERVING = 1 on field 1', () => {
    const buf = HealthCheckResponse.encode({ status: HealthCheckResponse_ServingStatus.SERVING }).finish();
    assert.deepEqual(Array.from(buf), [0x08, 0x01]);
    assert.equal(HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN, 3);
  });
});

describe('events', () => {
  const envelope = {
    timestamp: new Date(1_700_000_000_123),
    namespace: 'default',
    topic: '/tasks/exit',
    event: {
      typeUrl: 'containerd.events.TaskExit',
      value: Buffer.from(TaskExit.encode(TaskExit.fromPartial({ containerId: 'c', id: 'c', pid: 7, exitStatus: 1 })).finish()),
    },
  };

  it('gRPC and ttrpc Envelope share fields 1..4 and encode identically', () => {
    const a = GrpcEnvelope.encode(envelope).finish();
    const b = TtrpcEnvelope.encode(envelope).finish();
    assert.deepEqual(tags(a), [[1, 2], [2, 2], [3, 2], [4, 2]]);
    assert.deepEqual(Buffer.from(a), Buffer.from(b));
    assert.equal(text(one(a, 2)), 'default');
    assert.equal(text(one(a, 3)), '/tasks/exit');
    const any = fields(one(a, 4) as Uint8Array);
    assert.equal(text(any[0]!.value), 'containerd.events.TaskExit');
    const ts = fields(one(a, 1) as Uint8Array);
    assert.deepEqual(ts.map((f) => f.value), [1_700_000_000n, 123_000_000n]);
  });

  it('ttrpc ForwardRequest wraps the envelope in field 1', () => {
    const buf = TtrpcForwardRequest.encode({ envelope }).finish();
    assert.deepEqual(tags(buf), [[1, 2]]);
    assert.equal(TtrpcForwardRequest.decode(buf).envelope?.topic, '/tasks/exit');
  });

  it('TaskExit: exited_at = 5', () => {
    const buf = TaskExit.encode(TaskExit.fromPartial({ containerId: 'c', exitedAt: GO_ZERO_TIME })).finish();
    assert.deepEqual(tags(buf), [[1, 2], [5, 2]]);
  });

  it('ImageCreate is in the images service package', () => {
    const buf = ImageCreate.encode({ name: 'x', labels: { a: 'b' } }).finish();
    assert.deepEqual(tags(buf), [[1, 2], [2, 2]]);
  });
});

describe('shims', () => {
  it('shim v2 StateResponse: exec_id = 11', () => {
    const buf = V2StateResponse.encode(
      V2StateResponse.fromPartial({ id: 'c', pid: 1, status: Status.RUNNING, exitedAt: GO_ZERO_TIME, execId: 'e1' }),
    ).finish();
    assert.deepEqual(tags(buf), [[1, 2], [3, 0], [4, 0], [10, 2], [11, 2]]);
    assert.equal(text(one(buf, 11)), 'e1');
  });

  it('shim v1 CreateTaskRequest: runtime = 3 shifts rootfs to 4 and options to 11', () => {
    const buf = V1CreateTaskRequest.encode(
      V1CreateTaskRequest.fromPartial({
        id: 'c',
        bundle: '/b',
        runtime: 'runc',
        rootfs: [{ type: 'bind' }],
        terminal: true,
        stdin: 'i',
        checkpoint: 'cp',
        parentCheckpoint: 'pcp',
        options: { typeUrl: 'containerd.linux.runc.CreateOptions', value: Buffer.alloc(0) },
      }),
    ).finish();
    assert.deepEqual(tags(buf), [[1, 2], [2, 2], [3, 2], [4, 2], [5, 0], [6, 2], [9, 2], [10, 2], [11, 2]]);
    assert.equal(text(one(buf, 3)), 'runc');
  });

  it('runc option messages', () => {
    const o = RuncOptions.encode(RuncOptions.fromPartial({ binaryName: 'crun', systemdCgroup: true, criuWorkPath: 'w' })).finish();
    assert.deepEqual(tags(o), [[6, 2], [9, 0], [11, 2]]);
    // The two CheckpointOptions disagree on image_path/work_path numbering.
    const v1 = RuncCheckpointOptions.encode(RuncCheckpointOptions.fromPartial({ imagePath: 'i' })).finish();
    const lx = LinuxCheckpointOptions.encode(LinuxCheckpointOptions.fromPartial({ imagePath: 'i' })).finish();
    assert.deepEqual(tags(v1), [[8, 2]]);
    assert.deepEqual(tags(lx), [[9, 2]]);
    const ro = RuntimeOptions.encode({ typeUrl: 't', configPath: '/c' }).finish();
    assert.deepEqual(tags(ro), [[1, 2], [2, 2]]);
  });
});

describe('service definitions', () => {
  it('paths are the containerd 1.6 full method names', () => {
    assert.equal(VersionService.version.path, '/containerd.services.version.v1.Version/Version');
    assert.equal(TaskService.create.path, '/containerd.task.v2.Task/Create');
    assert.equal(TaskService.shutdown.path, '/containerd.task.v2.Task/Shutdown');
    assert.equal(TtrpcEventsService.forward.path, '/containerd.services.events.ttrpc.v1.Events/Forward');
    assert.equal(GrpcEventsService.subscribe.path, '/containerd.services.events.v1.Events/Subscribe');
    assert.equal(HealthService.check.path, '/grpc.health.v1.Health/Check');
    assert.equal(TasksService.deleteProcess.path, '/containerd.services.tasks.v1.Tasks/DeleteProcess');
    assert.equal(ShimService.shimInfo.path, '/containerd.runtime.linux.shim.v1.Shim/ShimInfo');
    assert.equal(IntrospectionService.server.path, '/containerd.services.introspection.v1.Introspection/Server');
    assert.equal(ContainersService.listStream.path, '/containerd.services.containers.v1.Containers/ListStream');
  });

  it('method counts and streaming flags', () => {
    assert.equal(Object.keys(TaskService).length, 17);
    assert.equal(Object.keys(ShimService).length, 16);
    assert.equal(Object.keys(TasksService).length, 17);
    assert.equal(Object.keys(SnapshotsService).length, 10);
    assert.equal(Object.keys(ContentService).length, 9);
    assert.equal(ContentService.write.requestStream, true);
    assert.equal(ContentService.write.responseStream, true);
    assert.equal(ContentService.read.responseStream, true);
    assert.equal(ContentService.list.responseStream, true);
    assert.equal(SnapshotsService.list.responseStream, true);
    assert.equal(ContainersService.listStream.responseStream, true);
    assert.equal(GrpcEventsService.subscribe.responseStream, true);
    assert.equal(HealthService.watch.responseStream, true);
    assert.equal(HealthService.check.responseStream, false);
  });
});
