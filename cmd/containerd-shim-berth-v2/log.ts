/**
 * The shim's logger. The long-lived shim's stderr is the bundle's `log` FIFO, which the daemon
 * copies into its own log, so lines use logrus' text layout like every containerd shim
 * (`time="…" level=warning msg="…" key=value`). Writes are synchronous and best effort: a
 * vanished or full FIFO must never take the shim down (the daemon may be restarting).
 */
import { writeSync } from 'node:fs';

export type Level = 'debug' | 'info' | 'warning' | 'error';
export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

const ORDER: Record<Level, number> = { debug: 0, info: 1, warning: 2, error: 3 };

function quote(value: string): string {
  return /^[A-Za-z0-9_./:@-]+$/.test(value) ? value : JSON.stringify(value);
}

function render(value: unknown): string {
  if (value instanceof Error) return quote(value.message);
  if (typeof value === 'string') return quote(value);
  return quote(String(value));
}

export function formatLine(level: Level, msg: string, fields: Fields, now = new Date()): string {
  let line = `time="${now.toISOString()}" level=${level} msg=${JSON.stringify(msg)}`;
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) line += ` ${key}=${render(value)}`;
  }
  return line + '\n';
}

export function createLogger(options: { debug?: boolean; fd?: number; fields?: Fields } = {}): Logger {
  const threshold = options.debug ? ORDER.debug : ORDER.info;
  const fd = options.fd ?? 2;
  const base = options.fields ?? {};
  const emit = (level: Level, msg: string, fields?: Fields) => {
    if (ORDER[level] < threshold) return;
    try {
      writeSync(fd, formatLine(level, msg, { ...base, ...fields }));
    } catch {
      // EPIPE/EAGAIN on the log FIFO: the line is dropped
    }
  };
  return {
    debug: (msg, fields) => emit('debug', msg, fields),
    info: (msg, fields) => emit('info', msg, fields),
    warn: (msg, fields) => emit('warning', msg, fields),
    error: (msg, fields) => emit('error', msg, fields),
    child: (fields) => createLogger({ ...options, fields: { ...base, ...fields } }),
  };
}
