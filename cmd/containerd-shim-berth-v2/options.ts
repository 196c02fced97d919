/**
 * runc options (`containerd.runc.v1.Options`) and the files the runc shim keeps in the bundle
 * for them: `options.json` (Go's encoding/json of the struct: snake_case keys, zero values
 * omitted, so empty options are `{}`) and `runtime` (the runc binary name, "" for runc). The
 * `delete` action reads them back after the long-lived shim is gone.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Any } from '../../api/gen/google/protobuf/any.js';
import { Options } from '../../api/gen/runc/options/oci.js';

export const OPTIONS_TYPE_URL = 'containerd.runc.v1.Options';
const OPTIONS_FILE = 'options.json';
const RUNTIME_FILE = 'runtime';

/** Field name in options.json for each Options property. */
const JSON_KEYS: Record<keyof Options, string> = {
  noPivotRoot: 'no_pivot_root',
  noNewKeyring: 'no_new_keyring',
  shimCgroup: 'shim_cgroup',
  ioUid: 'io_uid',
  ioGid: 'io_gid',
  binaryName: 'binary_name',
  root: 'root',
  criuPath: 'criu_path',
  systemdCgroup: 'systemd_cgroup',
  criuImagePath: 'criu_image_path',
  criuWorkPath: 'criu_work_path',
};

export function emptyOptions(): Options {
  return Options.fromPartial({});
}

/**
 * The runc options carried by a task's options Any. Other option types (a runtime that is not
 * runc-flavoured, runtimeoptions.v1.Options) carry nothing this shim uses, so they yield the
 * defaults.
 */
export function decodeOptions(any: Any | undefined): Options {
  if (!any || !any.typeUrl) return emptyOptions();
  const name = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1);
  if (name !== OPTIONS_TYPE_URL) return emptyOptions();
  return Options.decode(any.value);
}

export function optionsToJson(options: Options): string {
  const out: Record<string, unknown> = {};
  for (const [field, key] of Object.entries(JSON_KEYS) as Array<[keyof Options, string]>) {
    const value = options[field];
    if (value === false || value === 0 || value === '' || value === undefined) continue;
    out[key] = value;
  }
  return JSON.stringify(out);
}

export function optionsFromJson(text: string): Options {
  const parsed = JSON.parse(text) as Record<string, unknown>;
  const partial: Record<string, unknown> = {};
  for (const [field, key] of Object.entries(JSON_KEYS)) {
    if (parsed[key] !== undefined) partial[field] = parsed[key];
  }
  return Options.fromPartial(partial as Partial<Options>);
}

export function writeBundleOptions(bundle: string, options: Options): void {
  writeFileSync(join(bundle, OPTIONS_FILE), optionsToJson(options), { mode: 0o600 });
  writeFileSync(join(bundle, RUNTIME_FILE), options.binaryName, { mode: 0o600 });
}

/** The options saved in the bundle; defaults when the files are missing (never created). */
export function readBundleOptions(bundle: string): Options {
  let options = emptyOptions();
  try {
    options = optionsFromJson(readFileSync(join(bundle, OPTIONS_FILE), 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  try {
    const runtime = readFileSync(join(bundle, RUNTIME_FILE), 'utf8');
    if (runtime) options.binaryName = runtime;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return options;
}
