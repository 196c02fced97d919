/**
 * `--http-dump` and `--http-trace` of the registry commands: what berth says to registries,
 * on stderr. Node's HTTP client publishes every request and response on diagnostics
 * channels, so the registry client itself needs no hooks. Credentials are never printed.
 */
import { subscribe } from 'node:diagnostics_channel';
import type { ClientRequest, IncomingMessage } from 'node:http';

const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie']);

function headerLines(prefix: string, headers: Record<string, unknown>): string {
  return Object.entries(headers)
    .map(([k, v]) => `${prefix} ${k}: ${SECRET_HEADERS.has(k.toLowerCase()) ? '<redacted>' : Array.isArray(v) ? v.join(', ') : String(v)}\n`)
    .join('');
}

const target = (req: ClientRequest) => `${req.protocol}//${String(req.getHeader('host') ?? req.host)}${req.path}`;

/** Starts printing each registry request (`dump`: with headers) to `out`. */
export function traceHttp(opts: { dump: boolean; trace: boolean }, out: NodeJS.WritableStream = process.stderr): void {
  const started = new WeakMap<ClientRequest, number>();
  subscribe('http.client.request.start', (m) => {
    const { request } = m as { request: ClientRequest };
    started.set(request, performance.now());
    if (opts.dump) out.write(`> ${request.method} ${target(request)}\n${headerLines('>', request.getHeaders())}`);
  });
  subscribe('http.client.response.finish', (m) => {
    const { request, response } = m as { request: ClientRequest; response: IncomingMessage };
    const ms = (performance.now() - (started.get(request) ?? performance.now())).toFixed(1);
    if (opts.trace) out.write(`http: ${request.method} ${target(request)} -> ${response.statusCode} (${ms} ms)\n`);
    if (opts.dump) out.write(`< ${response.statusCode} ${response.statusMessage ?? ''}\n${headerLines('<', response.headers)}`);
  });
}
