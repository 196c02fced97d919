/**
 * `berth images pull|push|ls|check|rm|tag|label|import|export|mount|unmount`, with ctr 1.6's
 * flags and output. The work is done by client/pull and client/images; this file parses flags
 * and prints.
 */
import { open } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { once } from 'node:events';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { action, collect, UsageError } from '../action.js';
import type { CliContext } from '../context.js';
import { logLine } from '../output.js';
import { goErrnoText } from '../../../core/sys/errno.js';
import { isAlreadyExists, isNotFound, messageOf } from '../../../core/errdefs/errdefs.js';
import type { ResolverOptions } from '../../../client/remotes/resolver.js';
import type { RegistryHosts } from '../../../client/remotes/types.js';
import { trustedCertificates } from '../../../client/remotes/trust.js';

// ---------------------------------------------------------------------------- shared flags

/** ctr's RegistryFlags. */
export function registryFlags(cmd: Command): Command {
  return cmd
    .option('-k, --skip-verify', 'skip SSL certificate validation')
    .option('--plain-http', 'allow connections using plain HTTP')
    .option('-u, --user <user[:password]>', 'user[:password] Registry user and password')
    .option('--refresh <token>', 'refresh token for authorization server')
    .option('--hosts-dir <dir>', 'Custom hosts configuration directory')
    .option('--tlscacert <file>', 'path to TLS root CA')
    .option('--tlscert <file>', 'path to TLS client certificate')
    .option('--tlskey <file>', 'path to TLS client key')
    .option('--http-dump', 'dump all HTTP request/responses when interacting with container registry')
    .option('--http-trace', 'enable HTTP tracing for registry interactions');
}

export function snapshotterFlag(cmd: Command): Command {
  return cmd.option('--snapshotter <name>', 'snapshotter name. Empty value stands for the default value.', process.env.CONTAINERD_SNAPSHOTTER);
}

async function readPassword(): Promise<string> {
  process.stdout.write('Password: ');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin as AsyncIterable<Buffer>) {
    chunks.push(c);
    if (c.includes(10)) break;
  }
  process.stdout.write('\n');
  return Buffer.concat(chunks).toString('utf8').split('\n')[0]!.replace(/\r$/, '');
}

/** Resolver options from the registry flags (credentials, plain HTTP, hosts dir, default TLS). */
export async function resolverOptions(opts: Record<string, any>): Promise<ResolverOptions> {
  if (opts.httpDump || opts.httpTrace) {
    const { traceHttp } = await import('./http-debug.js');
    traceHttp({ dump: !!opts.httpDump, trace: !!opts.httpTrace });
  }
  let username: string = opts.user ?? '';
  let secret = '';
  const i = username.indexOf(':');
  if (i > 0) {
    secret = username.slice(i + 1);
    username = username.slice(0, i);
  }
  if (username && !secret) secret = await readPassword();
  else if (!username && opts.refresh) secret = opts.refresh;
  const out: ResolverOptions = {
    // As ctr: plain HTTP everywhere with --plain-http, and for localhost registries anyway.
    plainHttp: opts.plainHttp ? true : undefined,
    configPath: opts.hostsDir,
    credentials: username || secret ? () => ({ username, secret }) : undefined,
  };
  if (opts.skipVerify || opts.tlscacert || opts.tlscert) {
    const { configureHosts } = await import('../../../client/remotes/hosts.js');
    const base = configureHosts(out);
    const agent = new https.Agent({
      keepAlive: true,
      rejectUnauthorized: !opts.skipVerify,
      ca: trustedCertificates(opts.tlscacert ? [readFileSync(opts.tlscacert, 'utf8')] : []),
      cert: opts.tlscert ? readFileSync(opts.tlscert, 'utf8') : undefined,
      key: opts.tlskey ? readFileSync(opts.tlskey, 'utf8') : undefined,
    });
    const hosts: RegistryHosts = async (ns) => (await base(ns)).map((h) => (h.scheme === 'https' && !h.tls ? { ...h, agent, tls: { skipVerify: !!opts.skipVerify } } : h));
    return { hosts };
  }
  return out;
}

function labelArgs(list: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of list ?? []) {
    const i = l.indexOf('=');
    if (i < 0) out[l] = '';
    else out[l.slice(0, i)] = l.slice(i + 1);
  }
  return out;
}

const warn = (msg: string) => logLine('warning', msg);
const logError = (msg: string, err: unknown) => logLine('error', msg, messageOf(err));

// ---------------------------------------------------------------------------- pull / push

export function pullCommand(parent: Command, name = 'pull'): Command {
  const cmd = parent.command(name)
    .description('pull an image from a remote')
    .argument('[ref]')
    .option('--platform <platform>', 'Pull content from a specific platform', collect, [])
    .option('--all-platforms', 'pull content and metadata from all platforms')
    .option('--all-metadata', 'Pull metadata for all platforms')
    .option('--print-chainid', "Print the resulting image's chain ID")
    .option('--max-concurrent-downloads <n>', 'Set the max concurrent downloads for each pull', (v) => Number.parseInt(v, 10))
    .option('--label <key=value>', 'labels to attach to the image', collect, [])
    .option('--no-unpack', 'fetch only, do not unpack');
  registryFlags(cmd);
  snapshotterFlag(cmd);
  cmd.action(action(async (ctx, [ref], opts) => {
    if (!ref) throw new UsageError('please provide an image reference to pull');
    await runPull(ctx, ref, opts);
  }));
  return cmd;
}

/** `content fetch`: the pull without unpacking, as ctr's (the image record is created, as with client.Fetch). */
export function fetchCommand(parent: Command): Command {
  const cmd = parent.command('fetch')
    .description('fetch all content for an image into the content store')
    .argument('[ref]')
    .option('--platform <platform>', 'Pull content from a specific platform', collect, [])
    .option('--all-platforms', 'pull content from all platforms')
    .option('--all-metadata', 'Pull metadata for all platforms')
    .option('--metadata-only', 'Pull all metadata including manifests and configs')
    .option('--label <key=value>', 'labels to attach to the image', collect, []);
  registryFlags(cmd);
  cmd.action(action(async (ctx, [ref], opts) => {
    if (!ref) throw new UsageError('please provide an image reference to fetch');
    await runPull(ctx, ref, { ...opts, unpack: false });
  }));
  return cmd;
}

/** `content fetch-object REMOTE`: the object the reference resolves to, written to stdout, as ctr's. */
export function fetchObjectCommand(parent: Command): Command {
  const cmd = parent.command('fetch-object')
    .description('retrieve objects from a remote')
    .argument('[remote]')
    .argument('[object]')
    .argument('[hints...]');
  registryFlags(cmd);
  cmd.action(action(async (_ctx, [ref], opts) => {
    if (!ref) throw new UsageError('please provide a remote reference');
    const { fetchObject } = await import('./content-objects.js');
    await fetchObject(ref, await resolverOptions(opts), process.stdout);
  }));
  return cmd;
}

/** `content push-object REMOTE DIGEST MEDIATYPE`: one blob or manifest of the content store to a registry, as ctr's. */
export function pushObjectCommand(parent: Command): Command {
  const cmd = parent.command('push-object')
    .description('push an object to a remote')
    .argument('[remote]')
    .argument('[object]')
    .argument('[type]');
  registryFlags(cmd);
  cmd.action(action(async (ctx, [ref, object = '', mediaType = ''], opts) => {
    if (!ref) throw new UsageError('please provide a remote reference');
    const { pushObject } = await import('./content-objects.js');
    const desc = await pushObject(ctx.connection, ref, object, mediaType, await resolverOptions(opts));
    process.stdout.write(`Pushed ${desc.digest} ${desc.mediaType}\n`);
  }));
  return cmd;
}

async function runPull(ctx: CliContext, ref: string, opts: Record<string, any>): Promise<void> {
  const { pull } = await import('../../../client/pull/pull.js');
  const { ProgressTracker, showProgress, formatDuration } = await import('../../../client/pull/progress.js');
  const tracker = new ProgressTracker(ref);
  let fetchedNow: () => void = () => {};
  const fetched = new Promise<void>((r) => (fetchedNow = r));
  const work = pull(ctx.connection, ref, {
    remote: await resolverOptions(opts),
    platforms: opts.platform,
    allPlatforms: !!opts.allPlatforms,
    allMetadata: !!opts.allMetadata,
    metadataOnly: !!opts.metadataOnly,
    unpack: opts.unpack !== false,
    snapshotter: opts.snapshotter || undefined,
    labels: labelArgs(opts.label),
    maxConcurrentDownloads: opts.maxConcurrentDownloads,
    progress: tracker,
    onFetched: () => fetchedNow(),
  });
  // The table covers the download; unpacking may still be finishing after it.
  await showProgress(tracker, process.stdout, Promise.race([fetched, work.then(() => undefined, () => undefined)]));
  const start = performance.now();
  const res = await work;
  if (opts.unpack !== false) {
    for (const u of res.unpacked) {
      process.stdout.write(`unpacking ${u.platform} ${res.image.target.digest}...\n`);
      if (opts.printChainid) process.stdout.write(`image chain ID: ${u.chainID}\n`);
    }
    process.stdout.write(`done: ${formatDuration(performance.now() - start)}\t\n`);
  }
}

export function pushCommand(parent: Command, name = 'push'): Command {
  const cmd = parent.command(name)
    .description('push an image to a remote')
    .argument('[remote]')
    .argument('[local]')
    .option('--manifest <digest>', 'digest of manifest')
    .option('--manifest-type <type>', 'media type of manifest digest', 'application/vnd.oci.image.manifest.v1+json')
    .option('--platform <platform>', 'push content from a specific platform', collect, [])
    .option('--max-concurrent-uploaded-layers <n>', 'Set the max concurrent uploaded layers for each push', (v) => Number.parseInt(v, 10))
    .option('--allow-non-distributable-blobs', 'Allow pushing blobs that are marked as non-distributable');
  registryFlags(cmd);
  cmd.action(action(async (ctx, [ref, local], opts) => {
    if (!ref) throw new UsageError('please provide a remote image reference to push');
    const { push } = await import('../../../client/pull/push.js');
    const { ProgressTracker, showProgress } = await import('../../../client/pull/progress.js');
    const tracker = new ProgressTracker(ref, null);
    const work = push(ctx.connection, ref, {
      remote: await resolverOptions(opts),
      local,
      manifest: opts.manifest,
      manifestType: opts.manifestType,
      platforms: opts.platform,
      maxConcurrentUploads: opts.maxConcurrentUploadedLayers,
      allowNonDistributable: !!opts.allowNonDistributableBlobs,
      progress: tracker,
    });
    await showProgress(tracker, process.stdout, work.then(() => undefined, () => undefined));
    await work;
  }));
  return cmd;
}

// ---------------------------------------------------------------------------- the group

export function register(program: Command): void {
  const images = program.command('images').alias('image').alias('i').description('manage images');

  images.command('list')
    .alias('ls')
    .description('list images known to containerd')
    .argument('[filters...]')
    .option('-q, --quiet', 'print only the image refs')
    .action(action(async (ctx, filters, opts) => {
      const { listImages, ContentClient, imageSize, platformsOf } = await import('../../../client/images/index.js');
      const { defaultMatcher, format } = await import('../../../client/platforms/index.js');
      const { formatBytes, tabulate } = await import('../../../client/pull/progress.js');
      const list = await listImages(ctx.connection, filters);
      if (opts.quiet) {
        process.stdout.write(list.map((i) => `${i.name}\n`).join(''));
        return;
      }
      const cs = new ContentClient(ctx.connection);
      const rows: string[][] = [['REF', 'TYPE', 'DIGEST', 'SIZE', 'PLATFORMS', 'LABELS']];
      for (const img of list) {
        let size = 0;
        try {
          size = await imageSize(cs, img.target, defaultMatcher());
        } catch (err) {
          logError(`failed calculating size for image ${img.name}`, err);
        }
        let platforms = '-';
        try {
          const ps = [...new Set((await platformsOf(cs, img.target)).map(format))].sort();
          if (ps.length) platforms = ps.join(',');
        } catch (err) {
          logError(`failed resolving platform for image ${img.name}`, err);
        }
        const labels = Object.entries(img.labels).map(([k, v]) => `${k}=${v}`).sort();
        rows.push([img.name, img.target.mediaType, img.target.digest, formatBytes(size), platforms, labels.length ? labels.join(',') : '-']);
      }
      process.stdout.write(tabulate(rows));
    }));

  images.command('check')
    .description('check existing images to ensure all content is available locally')
    .argument('[filters...]')
    .option('-q, --quiet', 'print only the ready image refs (fully downloaded and unpacked)')
    .option('--snapshotter <name>', 'snapshotter name. Empty value stands for the default value.', process.env.CONTAINERD_SNAPSHOTTER)
    .action(action(async (ctx, filters, opts) => {
      const { listImages, ContentClient, check, imageContents, resolveSnapshotter } = await import('../../../client/images/index.js');
      const { defaultMatcher } = await import('../../../client/platforms/index.js');
      const { formatBytes, tabulate } = await import('../../../client/pull/progress.js');
      const { SnapshotsDefinition } = await import('../../../api/gen/services/snapshots/v1/snapshots.js');
      const list = await listImages(ctx.connection, filters);
      if (!list.length) return;
      const cs = new ContentClient(ctx.connection);
      const snapshotter = await resolveSnapshotter(ctx.connection, opts.snapshotter || undefined);
      const sn = ctx.connection.service(SnapshotsDefinition);
      let exitErr: Error | undefined;
      const rows: string[][] = [];
      for (const img of list) {
        let status = 'complete';
        let size = '-';
        let complete = true;
        try {
          const r = await check(cs, img.target, defaultMatcher());
          const req = r.required.reduce((a, d) => a + d.size, 0);
          const pres = r.present.reduce((a, d) => a + d.size, 0);
          if (r.missing.length) {
            status = 'incomplete';
            complete = false;
          }
          if (r.available) {
            status += ` (${r.present.length}/${r.required.length})`;
            size = `${formatBytes(pres)}/${formatBytes(req)}`;
          } else {
            status = `unavailable (${r.present.length}/?)`;
            size = `${formatBytes(pres)}/?`;
            complete = false;
          }
        } catch (err) {
          exitErr ??= new Error(`unable to check ${img.name}: ${messageOf(err)}`);
          logError(`unable to check ${img.name}`, err);
          status = 'error';
          complete = false;
        }
        let unpacked = false;
        try {
          const c = await imageContents(cs, img.target, defaultMatcher());
          if (!c.chainID) unpacked = true;
          else {
            try {
              await sn.stat({ snapshotter, key: c.chainID });
              unpacked = true;
            } catch (err) {
              if (!isNotFound(err)) throw err;
            }
          }
        } catch (err) {
          exitErr ??= new Error(`unable to check unpack for ${img.name}: ${messageOf(err)}`);
          logError(`unable to check unpack for ${img.name}`, err);
        }
        if (opts.quiet) {
          if (complete) process.stdout.write(`${img.name}\n`);
        } else {
          rows.push([img.name, img.target.mediaType, img.target.digest, status, size, String(unpacked)]);
        }
      }
      if (!opts.quiet) {
        // ctr's header line is tab-terminated (padded), its rows are not.
        const lines = tabulate([['REF', 'TYPE', 'DIGEST', 'STATUS', 'SIZE', 'UNPACKED'], ...rows]).split('\n');
        process.stdout.write(lines.map((l, i) => (i === 0 ? l : l.trimEnd())).join('\n'));
      }
      if (exitErr) throw exitErr;
    }));

  images.command('delete')
    .alias('del').alias('remove').alias('rm')
    .description('remove one or more images by reference')
    .argument('[refs...]')
    .option('--sync', 'Synchronously remove image and all associated resources')
    .action(action(async (ctx, refs, opts) => {
      const { deleteImage } = await import('../../../client/images/store.js');
      let exitErr: Error | undefined;
      for (let i = 0; i < refs.length; i++) {
        const target = refs[i]!;
        try {
          await deleteImage(ctx.connection, target, { sync: !!opts.sync && i === refs.length - 1 });
          process.stdout.write(`${target}\n`);
        } catch (err) {
          if (!isNotFound(err)) {
            exitErr ??= new Error(`unable to delete ${target}: ${messageOf(err)}`);
            logError(`unable to delete ${target}`, err);
            continue;
          }
          warn(`${target}: image not found`);
        }
      }
      if (exitErr) throw exitErr;
    }));

  images.command('tag')
    .description('tag an image')
    .argument('[source_ref]')
    .argument('[target_refs...]')
    .option('--force', 'force target_ref to be created, regardless if it already exists')
    .action(action(async (ctx, [ref, ...targets], opts) => {
      if (!ref) throw new UsageError('please provide an image reference to tag from');
      if (!targets.length) throw new UsageError('please provide an image reference to tag to');
      const { getImageRecord, createImage, deleteImage } = await import('../../../client/images/store.js');
      const { withLease } = await import('../../../client/pull/lease.js');
      await withLease(ctx.connection, async () => {
        const img = await getImageRecord(ctx.connection, ref);
        for (const t of targets) {
          const copy = { name: t, labels: img.labels, target: img.target };
          try {
            await createImage(ctx.connection, copy);
          } catch (err) {
            if (!(isAlreadyExists(err) && opts.force)) throw err;
            await deleteImage(ctx.connection, t);
            await createImage(ctx.connection, copy);
          }
          process.stdout.write(`${t}\n`);
        }
      });
    }));

  images.command('convert')
    .description('convert an image')
    .argument('[source_ref]')
    .argument('[target_ref]')
    .option('--uncompress', 'convert tar.gz layers to uncompressed tar layers')
    .option('--oci', 'convert Docker media types to OCI media types')
    .option('--platform <platform>', 'Pull content from a specific platform', collect, [])
    .option('--all-platforms', 'exports content from all platforms')
    .action(action(async (ctx, [src, dst], opts) => {
      if (!src || !dst) throw new UsageError('src and target image need to be specified');
      const { convertImage } = await import('../../../client/images/convert.js');
      const { defaultStrict, ordered, parse } = await import('../../../client/platforms/index.js');
      // As ctr: this platform only (exactly) unless told otherwise.
      const platform = opts.allPlatforms ? undefined : opts.platform.length ? ordered(...opts.platform.map(parse)) : defaultStrict();
      const img = await convertImage(ctx.connection, src, dst, { uncompress: !!opts.uncompress, docker2oci: !!opts.oci, platform });
      process.stdout.write(`${img.target.digest}\n`);
    }));

  images.command('label')
    .description('set and clear labels for an image')
    .argument('[name]')
    .argument('[labels...]')
    .option('-r, --replace-all', 'replace all labels')
    .action(action(async (ctx, [name, ...labels], opts) => {
      if (!name) throw new UsageError('please specify an image');
      const { updateImage } = await import('../../../client/images/store.js');
      const set = labelArgs(labels);
      const paths = Object.keys(set).map((k) => (opts.replaceAll ? 'labels' : `labels.${k}`));
      const updated = await updateImage(ctx.connection, { name, labels: set, target: { mediaType: '', digest: '', size: 0 } }, paths);
      process.stdout.write(`${Object.entries(updated.labels).map(([k, v]) => `${k}=${v}`).join(',')}\n`);
    }));

  pullCommand(images);
  pushCommand(images);

  const imp = images.command('import')
    .description('import images')
    .argument('[in]')
    .option('--base-name <name>', 'base image name for added images, when provided only images with this name prefix are imported', '')
    .option('--digests', 'whether to create digest images (default: false)')
    .option('--skip-digest-for-named', 'skip applying --digests option to images named in the importing tar (use it in conjunction with --digests)')
    .option('--index-name <name>', 'image name to keep index as, by default index is discarded')
    .option('--all-platforms', 'imports content for all platforms, false by default')
    .option('--platform <platform>', 'imports content for specific platform')
    .option('--no-unpack', 'skip unpacking the images, false by default')
    .option('--compress-blobs', 'compress uncompressed blobs when creating manifest (Docker format only)');
  snapshotterFlag(imp);
  imp.action(action(async (ctx, [input], opts) => {
    if (!input) throw new UsageError('please provide an input file (or - for stdin)');
    if (opts.skipDigestForNamed && !opts.digests) throw new UsageError('--skip-digest-for-named must be specified with --digests option');
    const { importArchive } = await import('../../../client/pull/import.js');
    let stream: Readable = process.stdin;
    if (input !== '-') {
      // Opened first so a missing or unreadable file is one clear line, as with ctr.
      const file = await open(input, 'r').catch((err: NodeJS.ErrnoException) => {
        throw new Error(`open ${input}: ${goErrnoText(err)}`);
      });
      if ((await file.stat()).isDirectory()) {
        await file.close();
        throw new Error(`read ${input}: is a directory`);
      }
      stream = file.createReadStream({ highWaterMark: 1 << 20 });
    }
    await importArchive(ctx.connection, stream, {
      baseName: opts.baseName || undefined,
      digests: !!opts.digests,
      skipDigestForNamed: !!opts.skipDigestForNamed,
      indexName: opts.indexName,
      allPlatforms: !!opts.allPlatforms,
      platform: opts.platform,
      compressBlobs: !!opts.compressBlobs,
      unpack: opts.unpack !== false,
      snapshotter: opts.snapshotter || undefined,
      onUnpack: (img, phase) => {
        if (phase === 'start') process.stdout.write(`unpacking ${img.name} (${img.target.digest})...`);
        else process.stdout.write('done\n');
      },
    });
  }));

  images.command('export')
    .description('export images')
    .argument('[out]')
    .argument('[images...]')
    .option('--skip-manifest-json', 'do not add Docker compatible manifest.json to archive')
    .option('--skip-non-distributable', 'do not add non-distributable blobs such as Windows layers to archive')
    .option('--platform <platform>', 'Pull content from a specific platform', collect, [])
    .option('--all-platforms', 'exports content from all platforms')
    .action(action(async (ctx, [out, ...names], opts) => {
      if (!out || !names.length) throw new UsageError('please provide both an output filename and an image reference to export');
      const { exportImages } = await import('../../../client/pull/export.js');
      let stream: Writable = process.stdout;
      if (out !== '-') {
        // Opened first so an unwritable path is one clear line, as with ctr.
        const file = await open(out, 'w').catch((err: NodeJS.ErrnoException) => {
          throw new Error(`open ${out}: ${goErrnoText(err)}`);
        });
        stream = file.createWriteStream();
      }
      try {
        await exportImages(ctx.connection, names, stream, {
          platforms: opts.platform,
          allPlatforms: !!opts.allPlatforms,
          skipManifestJson: !!opts.skipManifestJson,
          skipNonDistributable: !!opts.skipNonDistributable,
        });
      } finally {
        if (stream !== process.stdout) {
          stream.end();
          await once(stream, 'close');
        }
      }
    }));

  const mount = images.command('mount')
    .description('mount an image to a target path')
    .argument('[ref]')
    .argument('[target]')
    .option('--rw', 'Enable write support on the mount')
    .option('--platform <platform>', 'Mount the image for the specified platform')
    .option('--label <key=value>', 'labels to attach to the image', collect, []);
  registryFlags(mount);
  snapshotterFlag(mount);
  mount.action(action(async (ctx, [ref, target], opts) => {
    if (!ref) throw new UsageError('please provide an image reference to mount');
    if (!target) throw new UsageError('please provide a target path to mount to');
    const { getImage, unpackImage } = await import('../../../client/images/index.js');
    const { createLease, deleteLease } = await import('../../../client/pull/lease.js');
    const { defaultString } = await import('../../../client/platforms/index.js');
    const { SnapshotsDefinition } = await import('../../../api/gen/services/snapshots/v1/snapshots.js');
    const { mountAll } = await import('../../../core/mount/mount.js');
    const conn = ctx.connection;
    const snapshotter = opts.snapshotter || 'overlayfs';
    let created = false;
    try {
      await createLease(conn, { id: target, labels: { [`containerd.io/gc.ref.snapshot.${snapshotter}`]: target } });
      created = true;
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    conn.lease = target;
    try {
      const img = await getImage(conn, ref, { platform: opts.platform || defaultString() });
      await unpackImage(conn, img, { snapshotter });
      process.stdout.write(`${img.chainID}\n`);
      const sn = conn.service(SnapshotsDefinition);
      let mounts;
      try {
        mounts = opts.rw
          ? (await sn.prepare({ snapshotter, key: target, parent: img.chainID })).mounts
          : (await sn.view({ snapshotter, key: target, parent: img.chainID })).mounts;
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        mounts = (await sn.mounts({ snapshotter, key: target })).mounts;
      }
      try {
        await mountAll(mounts.map((m) => ({ type: m.type, source: m.source, target: m.target || undefined, options: m.options })), target);
      } catch (err) {
        await sn.remove({ snapshotter, key: target }).catch((e) => {
          if (!isNotFound(e)) process.stderr.write(`Error cleaning up snapshot after mount error: ${messageOf(e)}\n`);
        });
        throw err;
      }
      process.stdout.write(`${target}\n`);
    } catch (err) {
      conn.lease = undefined;
      if (created) await deleteLease(conn, target).catch(() => undefined);
      throw err;
    }
  }));

  const unmount = images.command('unmount')
    .description('unmount the image from the target')
    .argument('[target]')
    .option('--rm', 'remove the snapshot after a successful unmount');
  snapshotterFlag(unmount);
  unmount.action(action(async (ctx, [target], opts) => {
    if (!target) throw new UsageError('please provide a target path to unmount from');
    const { unmountAll } = await import('../../../core/mount/mount.js');
    await unmountAll(target);
    if (opts.rm) {
      const { deleteLease } = await import('../../../client/pull/lease.js');
      const { SnapshotsDefinition } = await import('../../../api/gen/services/snapshots/v1/snapshots.js');
      try {
        await deleteLease(ctx.connection, target);
      } catch (err) {
        if (!isNotFound(err)) throw new Error(`error deleting lease: ${messageOf(err)}`);
      }
      try {
        await ctx.connection.service(SnapshotsDefinition).remove({ snapshotter: opts.snapshotter || 'overlayfs', key: target });
      } catch (err) {
        if (!isNotFound(err)) throw new Error(`error removing snapshot: ${messageOf(err)}`);
      }
    }
    process.stdout.write(`${target}\n`);
  }));
}
