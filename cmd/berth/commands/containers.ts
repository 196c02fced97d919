/** `berth containers create|delete|info|list|label` with ctr 1.6's flags and output. */
import type { Command } from 'commander';
import { action, UsageError } from '../action.js';
import { goJson, goTabwriter, logLine } from '../output.js';
import { isNotFound } from '../../../core/errdefs/errdefs.js';
import { SPEC_TYPE_URL } from '../../../core/containers/containers.js';
import { containerFlags, newContainer, removeContainer } from './run.js';
import { goRFC3339, goTimeString, services, STATUS_NAMES } from './tasks.js';

type AnyPb = { typeUrl: string; value: Uint8Array } | undefined;

/** types.Any as Go's encoding/json prints it (`type_url`, base64 `value`, both omitempty). */
function anyJson(a: AnyPb): Record<string, string> | null {
  if (!a) return null;
  const out: Record<string, string> = {};
  if (a.typeUrl) out.type_url = a.typeUrl;
  if (a.value.length) out.value = Buffer.from(a.value).toString('base64');
  return out;
}

/** The containers.Container struct as `ctr containers info` prints it. */
export function containerInfoJson(c: any, withSpec = true): Record<string, unknown> {
  const ext = Object.entries(c.extensions ?? {});
  const out: Record<string, unknown> = {
    ID: c.id,
    Labels: Object.keys(c.labels ?? {}).length ? c.labels : null,
    Image: c.image,
    Runtime: { Name: c.runtime?.name ?? '', Options: anyJson(c.runtime?.options) },
    SnapshotKey: c.snapshotKey,
    Snapshotter: c.snapshotter,
    CreatedAt: goRFC3339(c.createdAt ?? new Date(-62135596800000)),
    UpdatedAt: goRFC3339(c.updatedAt ?? new Date(-62135596800000)),
    Extensions: ext.length ? Object.fromEntries(ext.map(([k, v]) => [k, anyJson(v as AnyPb)])) : null,
  };
  if (withSpec && c.spec?.value?.length) out.Spec = JSON.parse(Buffer.from(c.spec.value).toString('utf8'));
  else if (withSpec && c.spec) out.Spec = anyJson(c.spec);
  return out;
}

export function register(program: Command): void {
  program.enablePositionalOptions();
  const containers = program.command('containers').alias('c').alias('container').description('manage containers').enablePositionalOptions();

  containerFlags(
    containers.command('create')
      .description('create container')
      .usage('[flags] Image|RootFS CONTAINER [COMMAND] [ARG...]')
      // Unlike run, ctr's `containers create` parses flags anywhere on the line.
      .argument('[args...]'),
  ).action(action(async (ctx, positionals, opts) => {
    if (opts.config) throw new UsageError('--config is not supported by berth containers create');
    await newContainer(ctx, positionals, opts);
  }));

  containers.command('delete')
    .aliases(['del', 'remove', 'rm'])
    .description('delete one or more existing containers')
    .argument('<containers...>')
    .option('--keep-snapshot', 'do not clean up snapshot with container')
    .action(action(async (ctx, ids, opts) => {
      const svc = await services(ctx);
      let firstErr: unknown;
      for (const id of ids) {
        try {
          const { container } = await svc.containers.get({ id });
          let task;
          try {
            task = (await svc.tasks.get({ containerId: id })).process;
          } catch (err) {
            if (!isNotFound(err)) throw err;
          }
          if (task) {
            if (task.status !== 3 && task.status !== 1) {
              throw new Error(`cannot delete a non stopped container: {${STATUS_NAMES[task.status]?.toLowerCase()} ${task.exitStatus} ${goTimeString(task.exitedAt ?? new Date(-62135596800000))}}`);
            }
            await svc.tasks.delete({ containerId: id });
          }
          const snap = !opts.keepSnapshot && container?.snapshotter && container.snapshotKey
            ? { snapshotter: container.snapshotter, key: container.snapshotKey }
            : undefined;
          await removeContainer(ctx, id, snap);
        } catch (err) {
          firstErr ??= err;
          logLine('error', `failed to delete container ${JSON.stringify(id)}`, (err as Error).message);
        }
      }
      if (firstErr) throw firstErr;
    }));

  containers.command('info')
    .description('get info about a container')
    .argument('<container>')
    .option('--spec', 'only display the spec')
    .action(action(async (ctx, [id], opts) => {
      if (!id) throw new UsageError('container id must be provided');
      const svc = await services(ctx);
      const { container } = await svc.containers.get({ id });
      if (opts.spec) {
        if (container?.spec?.typeUrl !== SPEC_TYPE_URL) throw new Error('container has no OCI spec');
        process.stdout.write(`${goJson(JSON.parse(Buffer.from(container.spec.value).toString('utf8')))}\n`);
        return;
      }
      process.stdout.write(`${goJson(containerInfoJson(container))}\n`);
    }));

  containers.command('list')
    .alias('ls')
    .description('list containers')
    .argument('[filters...]')
    .option('-q, --quiet', 'print only the container id')
    .action(action(async (ctx, filters, opts) => {
      const svc = await services(ctx);
      const { containers: list } = await svc.containers.list({ filters });
      if (opts.quiet) {
        process.stdout.write(list.map((c) => `${c.id}\n`).join(''));
        return;
      }
      let text = 'CONTAINER\tIMAGE\tRUNTIME\t\n';
      for (const c of list) text += `${c.id}\t${c.image || '-'}\t${c.runtime?.name ?? ''}\t\n`;
      process.stdout.write(goTabwriter(text, 4, 4));
    }));

  containers.command('label')
    .description('set and clear labels for a container')
    .argument('<container>')
    .argument('[labels...]', '<key>=<value> to set, <key>= to clear')
    .action(action(async (ctx, [id, ...labels]) => {
      if (!id) throw new UsageError('container id must be provided');
      const svc = await services(ctx);
      const set: Record<string, string> = {};
      for (const l of labels) {
        const i = l.indexOf('=');
        if (i < 0) set[l] = 'true';
        else set[l.slice(0, i)] = l.slice(i + 1);
      }
      const { container: current } = await svc.containers.get({ id });
      const { container } = await svc.containers.update({
        container: { ...current!, labels: set },
        updateMask: Object.keys(set).map((k) => `labels.${k}`),
      });
      process.stdout.write(`${Object.entries(container?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',')}\n`);
    }));
}
