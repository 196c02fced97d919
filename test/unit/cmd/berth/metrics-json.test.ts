import assert from 'node:assert/strict';
import { test } from 'node:test';
import { metricsJson } from '../../../../cmd/berth/commands/tasks.js';

test('metrics JSON is what ctr prints: snake_case, zero values left out, every digit of uint64 counters', () => {
  const text = metricsJson({
    hugetlb: [],
    pids: { current: 2n, limit: 18446744073709551615n },
    cpu: { usage: { total: 5n, kernel: 0n, perCpu: [1n, 4n] }, throttling: { periods: 0n } },
    memory: { pgPgIn: 463n, rssHuge: 0n, note: 'big:1' },
  });
  assert.equal(text, [
    '{',
    '  "pids": {',
    '    "current": 2,',
    '    "limit": 18446744073709551615',
    '  },',
    '  "cpu": {',
    '    "usage": {',
    '      "total": 5,',
    '      "per_cpu": [',
    '        1,',
    '        4',
    '      ]',
    '    },',
    '    "throttling": {}',
    '  },',
    '  "memory": {',
    '    "pg_pg_in": 463,',
    '    "note": "big:1"',
    '  }',
    '}',
  ].join('\n'));
});
