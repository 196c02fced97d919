import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsonWithBigints } from '../../../../cmd/berth/commands/tasks.js';

test('metrics JSON keeps every digit of uint64 counters and prints them as numbers', () => {
  const text = jsonWithBigints({ pids: { current: 2n, limit: 18446744073709551615n }, note: 'big:1', list: [1n, 3] });
  assert.match(text, /"limit": 18446744073709551615\b/);
  assert.match(text, /"current": 2\b/);
  assert.match(text, /"note": "big:1"/);
  assert.deepEqual(JSON.parse(text.replace('18446744073709551615', '0')), { pids: { current: 2, limit: 0 }, note: 'big:1', list: [1, 3] });
});
