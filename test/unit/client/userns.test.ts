// ID mappings as ctr parses --uidmap/--gidmap (client/userns.ts): Go's base-0 unsigned syntax
// and its error words.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseGoUint32, parseIDMapping } from '../../../client/userns.js';

test('numbers in Go base-0 syntax', () => {
  const ok: [string, number][] = [
    ['0', 0], ['100000', 100000], ['0x186a0', 100000], ['0X1F', 31], ['0o17', 15], ['017', 15], ['0b101', 5],
    ['1_000', 1000], ['0x_ff', 255], ['4294967295', 4294967295],
  ];
  for (const [text, value] of ok) assert.equal(parseGoUint32(text), value, text);
  const bad: [string, string][] = [
    ['', 'invalid syntax'], ['-1', 'invalid syntax'], ['+1', 'invalid syntax'], ['1e5', 'invalid syntax'], ['08', 'invalid syntax'],
    ['0x', 'invalid syntax'], ['_1', 'invalid syntax'], ['1_', 'invalid syntax'], ['1__0', 'invalid syntax'], [' 1', 'invalid syntax'],
    ['4294967296', 'value out of range'], ['0x100000000', 'value out of range'],
  ];
  for (const [text, why] of bad) assert.throws(() => parseGoUint32(text), { message: `strconv.ParseUint: parsing ${JSON.stringify(text)}: ${why}` }, text);
});

test('container-id:host-id:size, with the field named in errors', () => {
  assert.deepEqual(parseIDMapping('0:100000:65536'), { containerID: 0, hostID: 100000, size: 65536 });
  assert.throws(() => parseIDMapping('0:100000'), { message: 'user namespace mappings require the format `container-id:host-id:size`' });
  assert.throws(() => parseIDMapping('x:1:1'), { message: 'invalid container id for user namespace remapping: strconv.ParseUint: parsing "x": invalid syntax' });
  assert.throws(() => parseIDMapping('0:1e5:1'), { message: 'invalid host id for user namespace remapping: strconv.ParseUint: parsing "1e5": invalid syntax' });
  assert.throws(() => parseIDMapping('0:1:-1'), { message: 'invalid size for user namespace remapping: strconv.ParseUint: parsing "-1": invalid syntax' });
});
