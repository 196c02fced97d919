/**
 * Command line of a runtime v2 shim. containerd passes Go `flag` style arguments
 * (`-namespace NS -address A -publish-binary B -id ID [-bundle B] [-debug] start|delete`), so
 * both `-name value` and `-name=value` are accepted, with one or two dashes, and the first
 * argument that is not a flag is the action (none = serve).
 */

export interface ShimFlags {
  namespace: string;
  id: string;
  /** The daemon's gRPC address (used for the socket name). */
  address: string;
  publishBinary: string;
  bundle: string;
  /** A socket path to listen on instead of the inherited fd 3. */
  socket: string;
  debug: boolean;
  version: boolean;
  /** 'start', 'delete', or '' for the long-lived serve mode. */
  action: string;
}

const STRING_FLAGS: Record<string, keyof ShimFlags> = {
  namespace: 'namespace',
  id: 'id',
  address: 'address',
  'publish-binary': 'publishBinary',
  bundle: 'bundle',
  socket: 'socket',
};
const BOOL_FLAGS: Record<string, keyof ShimFlags> = { debug: 'debug', v: 'version' };

export class UsageError extends Error {}

export function parseFlags(argv: readonly string[]): ShimFlags {
  const flags: ShimFlags = {
    namespace: '', id: '', address: '', publishBinary: '', bundle: '', socket: '', debug: false, version: false, action: '',
  };
  const record = flags as unknown as Record<string, string | boolean>;
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq === -1 ? body : body.slice(0, eq);
    const inline = eq === -1 ? undefined : body.slice(eq + 1);
    if (name in BOOL_FLAGS) {
      const value = inline === undefined ? true : parseBool(name, inline);
      record[BOOL_FLAGS[name]!] = value;
    } else if (name in STRING_FLAGS) {
      let value = inline;
      if (value === undefined) {
        if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: -${name}`);
        value = argv[++i]!;
      }
      record[STRING_FLAGS[name]!] = value;
    } else {
      throw new UsageError(`flag provided but not defined: -${name}`);
    }
  }
  flags.action = argv[i] ?? '';
  return flags;
}

function parseBool(name: string, value: string): boolean {
  if (/^(1|t|true)$/i.test(value)) return true;
  if (/^(0|f|false)$/i.test(value)) return false;
  throw new UsageError(`invalid boolean value "${value}" for -${name}`);
}

/** The argv the long-lived shim is re-executed with (what the runc shim passes too). */
export function serveArgs(flags: Pick<ShimFlags, 'namespace' | 'id' | 'address' | 'debug'>): string[] {
  const args = ['-namespace', flags.namespace, '-id', flags.id, '-address', flags.address];
  if (flags.debug) args.push('-debug');
  return args;
}
