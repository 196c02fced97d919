import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFilter, parseFilters, recordAdaptor } from '../../../../core/filters/filters.js';
import { filterPlugins } from '../../../../plugins/service/introspection/plugin.js';
import type { PluginResult } from '../../../../core/plugin/types.js';

const obj = recordAdaptor({ name: 'docker.io/library/busybox:latest', kind: 'committed' }, { 'a.b': 'x', team: 'blue' });

test('equality, inequality, presence and regex', () => {
  assert.equal(parseFilter('kind==committed').match(obj), true);
  assert.equal(parseFilter('kind!=committed').match(obj), false);
  assert.equal(parseFilter('labels.team').match(obj), true);
  assert.equal(parseFilter('labels.missing').match(obj), false);
  assert.equal(parseFilter('name~=busybox').match(obj), true);
  assert.equal(parseFilter('name~=^alpine').match(obj), false);
});

test('comma is AND, pipe is OR, separate strings are OR', () => {
  assert.equal(parseFilter('kind==committed,labels.team==blue').match(obj), true);
  assert.equal(parseFilter('kind==committed,labels.team==red').match(obj), false);
  assert.equal(parseFilter('labels.team==red|kind==committed').match(obj), true);
  assert.equal(parseFilters(['labels.team==red', 'kind==committed']).match(obj), true);
  assert.equal(parseFilters([]).match(obj), true);
});

test('quoted field path components and values', () => {
  assert.equal(parseFilter('labels."a.b"==x').match(obj), true);
  assert.equal(parseFilter('labels.`a.b`=="x"').match(obj), true);
  assert.equal(parseFilter('name=="docker.io/library/busybox:latest"').match(obj), true);
});

test('syntax errors are invalid arguments naming the filter', () => {
  assert.throws(() => parseFilter('kind=='), { message: 'filters: parse error: [kind==]: expected value or quoted: invalid argument' });
  assert.throws(() => parseFilter('kind==a b'), { message: 'filters: parse error: [kind==a  >|b|< ]: unexpected input: b: invalid argument' });
  assert.throws(() => parseFilter('==a'), /\[ >\|=\|< =a\]: expected field or quoted/);
  assert.throws(() => parseFilter('name~=('), /invalid regular expression/);
  assert.throws(() => parseFilter('labels."open'), /unterminated quoted string/);
});

const plugin = (type: string, id: string, capabilities: string[] = []): PluginResult => ({
  type, id, uri: `${type}.${id}`, requires: [], status: 'ok', initMs: 0,
  meta: { platforms: [], exports: {}, capabilities },
});

test('introspection filters: type, id, capabilities, OR', () => {
  const all = [
    plugin('io.containerd.snapshotter.v1', 'overlayfs', ['remap-ids']),
    plugin('io.containerd.snapshotter.v1', 'native'),
    plugin('io.containerd.internal.v1', 'opt'),
  ];
  const ids = (f: string[]) => filterPlugins(all, f).map((p) => p.id);
  assert.deepEqual(ids(['type==io.containerd.snapshotter.v1']), ['overlayfs', 'native']);
  assert.deepEqual(ids(['id==opt']), ['opt']);
  assert.deepEqual(ids(['capabilities==remap-ids']), ['overlayfs']);
  assert.deepEqual(ids(['type==io.containerd.snapshotter.v1,id==native']), ['native']);
  assert.deepEqual(ids(['id==opt|id==native']), ['native', 'opt']);
  assert.deepEqual(ids([]), ['overlayfs', 'native', 'opt']);
});
