// The snapshotters' root_path is checked with the config: empty (their directory under the
// daemon's root) or absolute. A relative one went into every mount handed to a shim, which
// resolves it from its bundle directory (every `ctr run` failed).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../../../core/config/shape.js';
import { EventExchange } from '../../../../core/events/exchange.js';
import { silentLogger } from '../../../../core/log/logger.js';
import { Kernel } from '../../../../core/plugin/kernel.js';
import { btrfsPlugin } from '../../../../plugins/snapshotter/btrfs/plugin.js';
import { nativePlugin } from '../../../../plugins/snapshotter/native/plugin.js';
import { overlayfsPlugin } from '../../../../plugins/snapshotter/overlayfs/plugin.js';

const kernel = (pluginConfig: Record<string, Record<string, unknown>>) => new Kernel([overlayfsPlugin, nativePlugin, btrfsPlugin], {
  root: '/nonexistent/root', state: '/nonexistent/state', addresses: { grpc: '/x.sock', ttrpc: '/x.sock.ttrpc' },
  pluginConfig, disabled: [], required: [], events: new EventExchange(), log: silentLogger,
  daemon: { logLevel: 'info', timeouts: {}, executable: 'berthd' },
});

describe('snapshotter root_path', () => {
  for (const id of ['overlayfs', 'native', 'btrfs']) {
    const key = `io.containerd.snapshotter.v1.${id}`;
    it(`${id}: a relative root_path is refused naming the plugin and the key; empty and absolute pass`, () => {
      assert.throws(() => kernel({ [key]: { root_path: 'rel/dir' } }).decodeConfigs(),
        (e) => e instanceof ConfigError && e.message.includes(`plugins."${key}": root_path: expected an absolute directory, got "rel/dir"`));
      assert.doesNotThrow(() => kernel({ [key]: { root_path: '' } }).decodeConfigs());
      assert.doesNotThrow(() => kernel({ [key]: { root_path: '/var/lib/elsewhere' } }).decodeConfigs());
    });
  }
});
