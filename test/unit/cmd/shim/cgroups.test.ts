import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { PidsStat } from '../../../../api/gen/cgroups/v1/metrics.js';
import { Metrics as MetricsV2 } from '../../../../api/gen/cgroups/v2/metrics.js';
import {
  CgroupV1, CgroupV2, parseBlkio, parseCgroupV1Mounts, parseIoStat, parseKeyValues, parseProcCgroup, parseUint,
} from '../../../../cmd/containerd-shim-berth-v2/cgroups.js';

test('/proc/<pid>/cgroup lines', () => {
  const entries = parseProcCgroup('12:cpu,cpuacct:/a/b\n1:name=systemd:/x\n0::/u\n');
  assert.deepEqual(entries, [
    { hierarchy: 12, controllers: ['cpu', 'cpuacct'], path: '/a/b' },
    { hierarchy: 1, controllers: ['name=systemd'], path: '/x' },
    { hierarchy: 0, controllers: [], path: '/u' },
  ]);
});

test('cgroup v1 mounts from mountinfo', () => {
  const mounts = parseCgroupV1Mounts([
    '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
    '35 31 0:32 /nested /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  ].join('\n'));
  assert.deepEqual(mounts, [
    { root: '/', mountpoint: '/sys/fs/cgroup/cpu', controllers: ['cpu'] },
    { root: '/nested', mountpoint: '/sys/fs/cgroup/memory', controllers: ['memory'] },
  ]);
});

test('numbers: "max", huge values, key/value files', () => {
  assert.equal(parseUint('max\n'), 0);
  assert.equal(parseUint('9223372036854771712\n'), 9223372036854771712);
  assert.equal(parseUint('18446744073709551615'), 18446744073709549568);
  assert.equal(parseUint('junk'), 0);
  assert.deepEqual([...parseKeyValues('cache 10\nrss 20\n\n')], [['cache', 10], ['rss', 20]]);
});

test('blkio and io.stat lines', () => {
  const entries = parseBlkio('8:0 Read 100\n8:0 Write 5\n8:16 7\nTotal 105\n', () => '/dev/x');
  assert.deepEqual(entries, [
    { op: 'Read', device: '/dev/x', major: 8, minor: 0, value: 100 },
    { op: 'Write', device: '/dev/x', major: 8, minor: 0, value: 5 },
    { op: '', device: '/dev/x', major: 8, minor: 16, value: 7 },
  ]);
  assert.deepEqual(parseIoStat('8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=9\n'), [{ major: 8, minor: 0, rbytes: 1, wbytes: 2, rios: 3, wios: 4 }]);
});

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'shim-cg-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(root, name, '..'), { recursive: true });
    writeFileSync(join(root, name), content);
  }
  return root;
}

test('v1 metrics from controller files', async () => {
  const root = tree({
    'pids/pids.current': '3\n',
    'pids/pids.max': 'max\n',
    'cpuacct/cpuacct.usage': '5000\n',
    'cpuacct/cpuacct.usage_percpu': '2000 3000 \n',
    'cpuacct/cpuacct.stat': 'user 2\nsystem 1\n',
    'cpu/cpu.stat': 'nr_periods 4\nnr_throttled 1\nthrottled_time 9\n',
    'memory/memory.stat': 'cache 11\nrss 22\ntotal_rss 33\nhierarchical_memory_limit 9223372036854771712\n',
    'memory/memory.usage_in_bytes': '4096\n',
    'memory/memory.limit_in_bytes': '9223372036854771712\n',
    'memory/memory.max_usage_in_bytes': '8192\n',
    'memory/memory.failcnt': '0\n',
    'memory/memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
  });
  const cg = new CgroupV1(new Map(['pids', 'cpuacct', 'cpu', 'memory'].map((c) => [c, join(root, c)])));
  const m = await cg.metrics();
  assert.deepEqual(m.pids, { current: 3, limit: 0 });
  assert.deepEqual(m.cpu?.usage, { total: 5000, kernel: 10_000_000, user: 20_000_000, perCpu: [2000, 3000] });
  assert.deepEqual(m.cpu?.throttling, { periods: 4, throttledPeriods: 1, throttledTime: 9 });
  assert.equal(m.memory?.cache, 11);
  assert.equal(m.memory?.totalRss, 33);
  assert.equal(m.memory?.hierarchicalMemoryLimit, 9223372036854771712);
  assert.deepEqual(m.memory?.usage, { usage: 4096, max: 8192, failcnt: 0, limit: 9223372036854771712 });
  assert.equal(m.memory?.swap, undefined);
  assert.equal(m.memoryOomControl?.oomKill, 2);
  assert.equal(cg.oomKills(), 2);
  const any = await cg.stats();
  assert.equal(any.typeUrl, 'io.containerd.cgroups.v1.Metrics');
  // Field 2 is PidsStat; walk the wire since limits exceed what the decoder takes as numbers.
  const reader = new BinaryReader(any.value);
  let pids: PidsStat | undefined;
  while (reader.pos < reader.len) {
    const [field, wire] = reader.tag();
    if (field === 2) pids = PidsStat.decode(reader.bytes());
    else reader.skip(wire);
  }
  assert.deepEqual(pids, { current: 3, limit: 0 });
});

test('v2 metrics from the unified hierarchy', async () => {
  const root = tree({
    'pids.current': '2\n',
    'pids.max': '100\n',
    'cpu.stat': 'usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n',
    'memory.stat': 'anon 100\nfile 200\npgfault 7\n',
    'memory.current': '300\n',
    'memory.max': '1000\n',
    'memory.events': 'low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n',
    'io.stat': '8:0 rbytes=1 wbytes=2 rios=3 wios=4\n',
  });
  const cg = new CgroupV2(root);
  const any = await cg.stats();
  assert.equal(any.typeUrl, 'io.containerd.cgroups.v2.Metrics');
  const m = MetricsV2.decode(any.value);
  assert.deepEqual(m.pids, { current: 2, limit: 100 });
  assert.equal(m.cpu?.usageUsec, 10);
  assert.deepEqual([m.memory?.anon, m.memory?.file, m.memory?.pgfault, m.memory?.usage, m.memory?.usageLimit], [100, 200, 7, 300, 1000]);
  assert.equal(m.memoryEvents?.oomKill, 1);
  assert.deepEqual(m.io?.usage, [{ major: 8, minor: 0, rbytes: 1, wbytes: 2, rios: 3, wios: 4 }]);
  assert.equal(cg.oomKills(), 1);
});
