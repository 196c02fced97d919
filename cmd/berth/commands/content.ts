/**
 * `berth content ls|get|ingest|label|rm|active|prune references`, with ctr 1.6's flags and
 * output. Also holds the Go tabwriter and go-units formatting ctr's tables use.
 */
import type { Command } from 'commander';
import { action, UsageError } from '../action.js';
import type { CliContext } from '../context.js';
import { digestProblem } from '../../../core/content/content.js';
import { isAlreadyExists, isNotFound, isUnavailable, messageOf } from '../../../core/errdefs/errdefs.js';
import { logLine } from '../output.js';
import { fetchCommand, fetchObjectCommand, pushObjectCommand } from './images.js';

// ---------------------------------------------------------------- formatting helpers

export interface TabwriterOptions {
  minwidth: number;
  tabwidth: number;
  padding: number;
  padchar: ' ' | '\t';
}

/**
 * Lays out text like Go's text/tabwriter (no flags): tab-terminated cells align in columns
 * across consecutive lines; text after a line's last tab is not part of a column.
 */
export function tabwrite(text: string, o: TabwriterOptions): string {
  const lines = text.split('\n');
  const trailingNewline = lines[lines.length - 1] === '';
  if (trailingNewline) lines.pop();
  const cells = lines.map((l) => l.split('\t'));
  const width = (s: string) => [...s].length;
  let out = '';
  const pad = (textw: number, cellw: number, useTabs: boolean) => {
    if (o.padchar === '\t' || useTabs) {
      if (o.tabwidth === 0) return;
      const w = Math.ceil(cellw / o.tabwidth) * o.tabwidth;
      out += '\t'.repeat(Math.ceil((w - textw) / o.tabwidth));
      return;
    }
    out += ' '.repeat(Math.max(0, cellw - textw));
  };
  const writeLines = (widths: number[], from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const line = cells[i]!;
      line.forEach((c, j) => {
        if (c.length === 0) {
          if (j < widths.length) pad(0, widths[j]!, false);
        } else {
          out += c;
          if (j < widths.length) pad(width(c), widths[j]!, false);
        }
      });
      if (i < lines.length - 1 || trailingNewline) out += '\n';
    }
  };
  const format = (widths: number[], line0: number, line1: number) => {
    const column = widths.length;
    for (let i = line0; i < line1; i++) {
      if (column >= cells[i]!.length - 1) continue;
      writeLines(widths, line0, i);
      line0 = i;
      let w = o.minwidth;
      for (; i < line1; i++) {
        const line = cells[i]!;
        if (column >= line.length - 1) break;
        w = Math.max(w, width(line[column]!) + o.padding);
      }
      format([...widths, w], line0, i);
      line0 = i;
      // The outer loop's i++ would skip line i; step back so it is examined.
      i--;
    }
    writeLines(widths, line0, line1);
  };
  format([], 0, cells.length);
  return out;
}

/** go-units HumanSize: decimal units, 4 significant digits ("3MB", "4.096kB", "100B"). */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  let s = v.toPrecision(4);
  if (s.includes('e')) {
    const [m, e] = s.split('e') as [string, string];
    s = `${m.includes('.') ? m.replace(/\.?0+$/, '') : m}e${e.startsWith('-') ? '-' : '+'}${e.replace(/^[+-]/, '').padStart(2, '0')}`;
  } else if (s.includes('.')) {
    s = s.replace(/\.?0+$/, '');
  }
  return `${s}${units[i]}`;
}

/** go-units HumanDuration ("Less than a second", "3 seconds", "About a minute", "2 hours"…). */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.trunc(ms / 3_600_000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`;
  return `${Math.trunc(ms / 3_600_000 / 24 / 365)} years`;
}

/** ctr's label arguments: `k=v`, a bare `k` meaning `k=true`. */
export function labelArgs(args: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of args) {
    const i = a.indexOf('=');
    if (i < 0) out[a] = 'true';
    else out[a.slice(0, i)] = a.slice(i + 1);
  }
  return out;
}

const sortedPairs = (labels: Record<string, string>) =>
  Object.entries(labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`);

/** go-digest's Parse: the digest, or an error in its words. */
function parseDigest(value: string | undefined): string {
  const v = value ?? '';
  const problem = digestProblem(v);
  if (problem) throw new Error(problem);
  return v;
}

async function contentApi(ctx: CliContext) {
  const { ContentDefinition } = await import('../../../api/gen/services/content/v1/content.js');
  return ctx.connection.service(ContentDefinition);
}

/** Writes to stdout and resolves once the bytes are handed to the OS (exit may follow right away). */
export const write = (s: string | Uint8Array) => new Promise<void>((resolve, reject) => process.stdout.write(s, (err) => (err ? reject(err) : resolve())));

// ---------------------------------------------------------------- ingest

const STAT = 0;
const WRITE = 1;
const COMMIT = 2;
const CHUNK = 1 << 20;
/** Writes sent ahead of their responses. */
const WINDOW = 8;

/** Yields the input in chunks of about `size` bytes, skipping its first `skip` bytes. */
async function* chunked(input: AsyncIterable<Buffer>, size: number, skip: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  let toSkip = skip;
  for await (let b of input) {
    if (toSkip > 0) {
      if (b.length <= toSkip) {
        toSkip -= b.length;
        continue;
      }
      b = b.subarray(toSkip);
      toSkip = 0;
    }
    parts.push(b);
    have += b.length;
    while (have >= size) {
      const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
      yield all.subarray(0, size);
      const rest = all.subarray(size);
      parts = rest.length ? [rest] : [];
      have = rest.length;
    }
  }
  if (toSkip > 0) throw new Error(`unable to resume write: input ended ${toSkip} bytes before the stored offset`);
  if (have > 0) yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
}

export interface IngestOptions {
  ref: string;
  expectedSize: number;
  expectedDigest: string;
  labels?: Record<string, string>;
}

/**
 * Uploads `input` as the ingest `ref` and commits it. Resumes an interrupted ingest from the
 * offset the daemon reports (skipping that much input), retries while another writer holds the
 * ref, and counts "already exists" as success. Returns the committed digest ('' when present).
 */
export async function ingest(ctx: CliContext, input: AsyncIterable<Buffer>, o: IngestOptions): Promise<string> {
  const api = await contentApi(ctx);
  const progress = { readInput: false };
  for (let backoff = 16; ; backoff = Math.min(backoff * 2, 2048)) {
    try {
      return await ingestOnce(api, input, o, progress);
    } catch (err) {
      if (isAlreadyExists(err)) return '';
      // Another writer holds the ref: wait and try again. Not once input was consumed (it cannot
      // be replayed), nor when the daemon is not there at all.
      if (!isUnavailable(err) || progress.readInput || messageOf(err).startsWith('cannot connect')) throw err;
      await new Promise((r) => setTimeout(r, Math.random() * backoff));
    }
  }
}

async function ingestOnce(
  api: Awaited<ReturnType<typeof contentApi>>,
  input: AsyncIterable<Buffer>,
  o: IngestOptions,
  progress: { readInput: boolean },
): Promise<string> {
  const call = await api.write();
  const responses = call.responses[Symbol.asyncIterator]();
  let failure: Error | undefined;
  let received = 0;
  let lastResponse: Awaited<ReturnType<typeof responses.next>>['value'] | undefined;
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of waiters) w();
    waiters.clear();
  };
  let rejectFailed!: (e: Error) => void;
  const failed = new Promise<never>((_, reject) => (rejectFailed = reject));
  failed.catch(() => undefined);
  // Responses are consumed in the background so errors surface while writes are in flight.
  const reader = (async () => {
    try {
      for (;;) {
        const r = await responses.next();
        if (r.done) break;
        lastResponse = r.value;
        received++;
        notify();
      }
      failure ??= new Error('write stream ended early');
    } catch (err) {
      failure = err as Error;
    }
    rejectFailed(failure);
    notify();
  })();
  const until = async (n: number) => {
    while (received < n) {
      if (failure) throw failure;
      await new Promise<void>((r) => waiters.add(r));
    }
    return lastResponse!;
  };
  let sent = 0;
  const send = async (req: Parameters<typeof call.write>[0]) => {
    if (failure) throw failure;
    await Promise.race([call.write(req), failed]);
    sent++;
  };
  try {
    await send({ action: STAT, ref: o.ref, total: o.expectedSize, expected: o.expectedDigest });
    await until(sent);
    await send({ action: STAT });
    const st = await until(sent);
    let offset = st.offset;
    progress.readInput = true;
    for await (const data of chunked(input, CHUNK, offset)) {
      await send({ action: WRITE, offset, data });
      offset += data.length;
      if (sent - received > WINDOW) await until(sent - WINDOW);
    }
    await until(sent);
    if (o.expectedSize && offset < o.expectedSize) throw new Error('failed to read expected number of bytes: unexpected EOF');
    await send({ action: COMMIT, offset, total: o.expectedSize, expected: o.expectedDigest, labels: o.labels ?? {} });
    let done: Awaited<ReturnType<typeof until>>;
    try {
      done = await until(sent);
    } catch (err) {
      if (isAlreadyExists(err)) throw err;
      throw new Error(`failed commit on ref ${JSON.stringify(o.ref)}: commit failed: ${messageOf(err)}`, { cause: err });
    }
    if (o.expectedSize && done.offset !== o.expectedSize) throw new Error(`unexpected size: ${done.offset} != ${o.expectedSize}`);
    if (o.expectedDigest && done.digest !== o.expectedDigest) throw new Error(`unexpected digest: ${done.digest} != ${o.expectedDigest}`);
    call.end();
    await reader;
    return done.digest;
  } catch (err) {
    call.cancel();
    await reader;
    throw err;
  }
}

// ---------------------------------------------------------------- commands

export function register(program: Command): void {
  const content = program.command('content').description('manage content');

  content.command('active')
    .description('display active transfers')
    .argument('[regexp]', 'filter')
    .option('-t, --timeout <duration>', 'total timeout for fetch')
    .option('--root <path>', 'path to content store root (ignored)', '/tmp/content')
    .action(action(async (ctx, args) => {
      const api = await contentApi(ctx);
      const { statuses } = await api.listStatuses({ filters: args[0] ? [args[0]] : [] });
      let text = 'REF\tSIZE\tAGE\t\n';
      for (const s of statuses) {
        text += `${s.ref}\t${humanSize(s.offset)}\t${humanDuration(Date.now() - (s.startedAt?.getTime() ?? Date.now()))}\t\n`;
      }
      await write(tabwrite(text, { minwidth: 1, tabwidth: 8, padding: 1, padchar: '\t' }));
    }));

  content.command('delete')
    .aliases(['del', 'remove', 'rm'])
    .description('permanently delete one or more blobs')
    .argument('[digests...]')
    .action(action(async (ctx, args) => {
      const api = await contentApi(ctx);
      let exitError: Error | undefined;
      for (const arg of args) {
        let dgst: string;
        try {
          dgst = parseDigest(arg);
        } catch (err) {
          exitError ??= err as Error;
          logLine('error', `could not delete ${arg}`, messageOf(err));
          continue;
        }
        try {
          await api.delete({ digest: dgst });
        } catch (err) {
          if (!isNotFound(err)) {
            exitError ??= err as Error;
            logLine('error', `could not delete ${dgst}`, messageOf(err));
          }
          continue;
        }
        await write(`${dgst}\n`);
      }
      if (exitError) throw exitError;
    }));

  content.command('get')
    .description('get the data for an object')
    .argument('[digest]')
    .action(action(async (ctx, args) => {
      const dgst = parseDigest(args[0]);
      const api = await contentApi(ctx);
      await api.info({ digest: dgst });
      for await (const r of api.read({ digest: dgst, offset: 0, size: 0 })) if (r.data.length) await write(r.data);
    }));

  fetchCommand(content);
  fetchObjectCommand(content);
  pushObjectCommand(content);
  content.command('edit')
    .description('edit a blob and return a new digest')
    .argument('[digest]')
    .option('--validate <format>', 'validate the result against a format (json, mediatype, etc.)')
    .option('--editor <editor>', 'select editor (vim, emacs, etc.) (env EDITOR)', process.env.EDITOR)
    .action(action(async (ctx, [digest = ''], opts) => {
      if (opts.validate) throw new UsageError('validating the edit result not supported');
      if (!opts.editor) throw new UsageError('editor is required');
      const { editBlob } = await import('./content-objects.js');
      process.stdout.write(`${await editBlob(ctx.connection, digest, opts.editor)}\n`);
    }));

  content.command('ingest')
    .description('accept content into the store')
    .argument('[key]', 'transaction reference')
    .option('--expected-size <n>', 'validate against provided size', '0')
    .option('--expected-digest <digest>', 'verify content against expected digest', '')
    .action(action(async (ctx, args, opts) => {
      const ref = args[0] ?? '';
      const expectedSize = Number.parseInt(String(opts.expectedSize), 10);
      if (!Number.isFinite(expectedSize)) throw new UsageError(`invalid value ${JSON.stringify(opts.expectedSize)} for flag -expected-size`);
      const expectedDigest = String(opts.expectedDigest ?? '');
      if (expectedDigest) parseDigest(expectedDigest);
      if (!ref) throw new Error('must specify a transaction reference');
      await ingest(ctx, process.stdin as AsyncIterable<Buffer>, { ref, expectedSize, expectedDigest });
    }));

  content.command('list')
    .alias('ls')
    .description('list all blobs in the store')
    .argument('[filters...]')
    .option('-q, --quiet', 'print only the blob digest')
    .action(action(async (ctx, args, opts) => {
      const api = await contentApi(ctx);
      const rows: string[] = [];
      let text = opts.quiet ? '' : 'DIGEST\tSIZE\tAGE\tLABELS\n';
      for await (const batch of api.list({ filters: args })) {
        for (const info of batch.info) {
          if (opts.quiet) {
            rows.push(`${info.digest}\n`);
            continue;
          }
          const labels = sortedPairs(info.labels).join(',') || '-';
          const age = humanDuration(Date.now() - (info.createdAt?.getTime() ?? Date.now()));
          text += `${info.digest}\t${humanSize(info.size)}\t${age}\t${labels}\n`;
        }
      }
      await write(opts.quiet ? rows.join('') : tabwrite(text, { minwidth: 1, tabwidth: 8, padding: 1, padchar: '\t' }));
    }));

  content.command('label')
    .description('add labels to content')
    .argument('<digest>')
    .argument('[labels...]', '<label>=<value> ...')
    .action(action(async (ctx, [object, ...rest]) => {
      const labels = labelArgs(rest);
      const dgst = parseDigest(object);
      const api = await contentApi(ctx);
      const paths = Object.keys(labels).map((k) => `labels.${k}`);
      const set = Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== ''));
      const res = paths.length
        ? await api.update({ info: { digest: dgst, labels: set }, updateMask: paths })
        : await api.info({ digest: dgst });
      await write(`${sortedPairs(res.info?.labels ?? {}).join(',')}\n`);
    }));

  const prune = content.command('prune').description('prunes content from the content store');
  prune.command('references')
    .description('prunes preference labels from the content store (layers only by default)')
    .option('--async', 'allow garbage collection to cleanup asynchronously')
    .option('--dry', 'just show updates without applying (enables debug logging)')
    .action(action(async (ctx, _args, opts) => {
      const api = await contentApi(ctx);
      const { LeasesDefinition } = await import('../../../api/gen/services/leases/v1/leases.js');
      const { randomLeaseIdForClient, expiryLabel } = await import('./leases.js');
      const infos = [];
      for await (const batch of api.list({ filters: [] })) infos.push(...batch.info);
      for (const info of infos) {
        const fields: string[] = [];
        for (const k of Object.keys(info.labels)) {
          if (!isLayerLabel(k)) continue;
          if (opts.dry) {
            process.stderr.write(`Removing label digest=${info.digest} label=${k}\n`);
            continue;
          }
          fields.push(`labels.${k}`);
          delete info.labels[k];
        }
        if (fields.length) await api.update({ info: { digest: info.digest, labels: info.labels }, updateMask: fields });
      }
      const leases = ctx.connection.service(LeasesDefinition);
      const { lease } = await leases.create({ id: randomLeaseIdForClient(), labels: expiryLabel(60 * 60 * 1000) });
      await leases.delete({ id: lease?.id ?? '', sync: !opts.async });
    }));
}

const LAYER_PREFIX = 'containerd.io/gc.ref.content.l.';
const CONTENT_PREFIX = 'containerd.io/gc.ref.content.';

/** Layer references ctr's prune removes: `gc.ref.content.l.*`, and legacy numbered ones except 0 (the config). */
export function isLayerLabel(key: string): boolean {
  if (key.startsWith(LAYER_PREFIX)) return true;
  if (!key.startsWith(CONTENT_PREFIX)) return false;
  const rest = key.slice(CONTENT_PREFIX.length);
  return /^\d*$/.test(rest) && rest !== '0';
}
