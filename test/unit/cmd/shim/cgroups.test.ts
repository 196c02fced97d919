import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Metrics as MetricsV1 } from '../../../../api/gen/cgroups/v1/metrics.js';
import { Metrics as MetricsV2 } from '../../../../api/gen/cgroups/v2/metrics.js';
import {
  CgroupV1, CgroupV2, parseBlkio, parseCgroupV1Mounts, parseIoStat, parseKeyValues, parseProcCgroup, parseUint,
} from '../../../../cmd/containerd-shim-berth-v2/cgroups.js';
import { tempDir } from '../../../helpers/tmp.js';

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
  assert.equal(parseUint('max\n'), 0n);
  assert.equal(parseUint('9223372036854771712\n'), 9223372036854771712n);
  assert.equal(parseUint('18446744073709551615'), 18446744073709551615n);
  assert.equal(parseUint('18446744073709551616'), 18446744073709551615n);
  assert.equal(parseUint('junk'), 0n);
  assert.deepEqual([...parseKeyValues('cache 10\nrss 20\n\n')], [['cache', 10n], ['rss', 20n]]);
});

test('blkio and io.stat lines', () => {
  const entries = parseBlkio('8:0 Read 100\n8:0 Write 5\n8:16 7\nTotal 105\n', () => '/dev/x');
  assert.deepEqual(entries, [
    { op: 'Read', device: '/dev/x', major: 8n, minor: 0n, value: 100n },
    { op: 'Write', device: '/dev/x', major: 8n, minor: 0n, value: 5n },
    { op: '', device: '/dev/x', major: 8n, minor: 16n, value: 7n },
  ]);
  assert.deepEqual(parseIoStat('8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=9\n'), [{ major: 8n, minor: 0n, rbytes: 1n, wbytes: 2n, rios: 3n, wios: 4n }]);
});

function tree(files: Record<string, string>): string {
  const root = tempDir('shim-cg-');
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
  assert.deepEqual(m.pids, { current: 3n, limit: 0n });
  assert.deepEqual(m.cpu?.usage, { total: 5000n, kernel: 10_000_000n, user: 20_000_000n, perCpu: [2000n, 3000n] });
  assert.deepEqual(m.cpu?.throttling, { periods: 4n, throttledPeriods: 1n, throttledTime: 9n });
  assert.equal(m.memory?.cache, 11n);
  assert.equal(m.memory?.totalRss, 33n);
  assert.equal(m.memory?.hierarchicalMemoryLimit, 9223372036854771712n);
  assert.deepEqual(m.memory?.usage, { usage: 4096n, max: 8192n, failcnt: 0n, limit: 9223372036854771712n });
  assert.equal(m.memory?.swap, undefined);
  assert.equal(m.memoryOomControl?.oomKill, 2n);
  assert.equal(cg.oomKills(), 2);
  const any = await cg.stats();
  assert.equal(any.typeUrl, 'io.containerd.cgroups.v1.Metrics');
  const decoded = MetricsV1.decode(any.value);
  assert.deepEqual(decoded.pids, { current: 3n, limit: 0n });
  assert.equal(decoded.memory?.usage?.limit, 9223372036854771712n);
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
  assert.deepEqual(m.pids, { current: 2n, limit: 100n });
  assert.equal(m.cpu?.usageUsec, 10n);
  assert.deepEqual([m.memory?.anon, m.memory?.file, m.memory?.pgfault, m.memory?.usage, m.memory?.usageLimit], [100n, 200n, 7n, 300n, 1000n]);
  assert.equal(m.memoryEvents?.oomKill, 1n);
  assert.deepEqual(m.io?.usage, [{ major: 8n, minor: 0n, rbytes: 1n, wbytes: 2n, rios: 3n, wios: 4n }]);
  assert.equal(cg.oomKills(), 1);
});

test('an unlimited v2 limit is the largest uint64, exactly', async () => {
  const root = tree({ 'pids.current': '1\n', 'pids.max': 'max\n', 'memory.stat': 'anon 1\n', 'memory.max': 'max\n' });
  const m = MetricsV2.decode((await new CgroupV2(root).stats()).value);
  assert.equal(m.pids?.limit, 18446744073709551615n);
  assert.equal(m.memory?.usageLimit, 18446744073709551615n);
});
