// config/config.toml is the documented default: it must be exactly what `berthd config default`
// prints for the current builtins, so a new plugin or config key shows up there too.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultConfigWithPlugins, renderToml } from '../../core/config/render.js';
import { builtins } from '../../plugins/builtins.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

it('config/config.toml is `berthd config default` (regenerate: node bin/berthd.js config default > config/config.toml)', async () => {
  const expected = await renderToml(defaultConfigWithPlugins(builtins));
  assert.equal(readFileSync(join(REPO, 'config', 'config.toml'), 'utf8'), expected);
});
