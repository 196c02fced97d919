/**
 * Runtime name → shim binary, as containerd 1.6 resolves it: an absolute path is taken as is;
 * otherwise `a.b.<name>.<version>` becomes `containerd-shim-<name>-<version>`, looked up next to
 * the runtime string (relative to the daemon's cwd), then on $PATH, then beside the daemon
 * executable. Results are cached per binary name, so only the first task pays the lookup.
 */
import { access, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { InvalidArgumentError, NotFoundError } from '../../../core/errdefs/errdefs.js';

/** `io.containerd.runc.v2` → `containerd-shim-runc-v2`; '' when the name has fewer than two parts. */
export function shimBinaryName(runtime: string): string {
  const parts = runtime.split('.');
  if (parts.length < 2) return '';
  return `containerd-shim-${parts[parts.length - 2]}-${parts[parts.length - 1]}`;
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const st = await stat(path);
    if (!st.isFile()) return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** exec.LookPath: the first executable regular file named `name` on `pathEnv`. */
export async function lookPath(name: string, pathEnv = process.env.PATH ?? ''): Promise<string | undefined> {
  for (const dir of pathEnv.split(delimiter)) {
    const candidate = join(dir || '.', name);
    if (await isExecutableFile(candidate)) return resolve(candidate);
  }
  return undefined;
}

export class RuntimeResolver {
  private readonly cache = new Map<string, string>();

  /** `executable` is the daemon's own path (its directory is the last place searched). */
  constructor(
    private readonly executable: string,
    private readonly pathEnv = () => process.env.PATH ?? '',
    /** Configured substitutions: runtime name → runtime name or absolute path. */
    private readonly overrides: Readonly<Record<string, string>> = {},
  ) {}

  async resolve(requested: string): Promise<string> {
    if (!requested) throw new InvalidArgumentError('no runtime name');
    const runtime = this.overrides[requested] ?? requested;
    if (isAbsolute(runtime)) {
      if (!(await exists(runtime))) throw new NotFoundError(`invalid custom binary path: stat ${runtime}: no such file or directory`);
      return runtime;
    }
    const name = shimBinaryName(runtime);
    if (!name) {
      throw new InvalidArgumentError(
        `invalid runtime name ${runtime}, correct runtime name should be either format like \`io.containerd.runc.v1\` or a full path to the binary`,
      );
    }
    const cached = this.cache.get(name);
    if (cached) return cached;
    let found: string | undefined;
    const beside = resolve(dirname(runtime), name);
    if (await exists(beside)) found = beside;
    found ??= await lookPath(name, this.pathEnv());
    if (!found) {
      const selfDir = dirname(this.executable);
      for (const candidate of [join(selfDir, name), join(selfDir, `${name}.js`)]) {
        if (await exists(candidate)) {
          found = candidate;
          break;
        }
      }
    }
    if (!found) throw new NotFoundError(`runtime ${JSON.stringify(runtime)} binary not installed ${JSON.stringify(name)}: file does not exist`);
    found = resolve(found);
    this.cache.set(name, found);
    return found;
  }
}
