/**
 * Daemon logging on winston. The text format follows containerd's logrus lines
 * (`time="…" level=info msg="…" key=value`) so operators can read both the same way;
 * json emits one object per line. Plugins get child loggers carrying their URI.
 */
import winston from 'winston';

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
  /** Whether debug lines are emitted (to skip building expensive fields). */
  readonly debugEnabled: boolean;
}

/** containerd's level names mapped onto winston's npm levels. */
function winstonLevel(level: string): string {
  switch (level) {
    case 'trace': return 'silly';
    case 'debug': return 'debug';
    case 'warn': case 'warning': return 'warn';
    case 'error': case 'fatal': case 'panic': return 'error';
    default: return 'info';
  }
}

function quote(v: unknown): string {
  const s = v instanceof Error ? v.message : typeof v === 'string' ? v : JSON.stringify(v);
  return /^[A-Za-z0-9_./:@+-]+$/.test(s) ? s : JSON.stringify(s);
}

const textFormat = winston.format.printf((info) => {
  const { level, message, timestamp, ...rest } = info as Record<string, unknown>;
  const lvl = level === 'silly' ? 'trace' : level === 'warn' ? 'warning' : String(level);
  let line = `time="${String(timestamp)}" level=${lvl} msg=${JSON.stringify(String(message))}`;
  for (const [k, v] of Object.entries(rest)) {
    if (typeof k === 'string' && v !== undefined) line += ` ${k}=${quote(v)}`;
  }
  return line;
});

class WinstonLogger implements Logger {
  constructor(private readonly w: winston.Logger, readonly debugEnabled: boolean) {}
  // winston builds the entry and runs it through its stream pipeline before its level filter
  // drops it: a debug call at info level costs as much as a logged line unless stopped here.
  debug(msg: string, fields?: Fields) { if (this.debugEnabled) this.w.debug(msg, fields); }
  info(msg: string, fields?: Fields) { this.w.info(msg, fields); }
  warn(msg: string, fields?: Fields) { this.w.warn(msg, fields); }
  error(msg: string, fields?: Fields) { this.w.error(msg, fields); }
  child(fields: Fields): Logger { return new WinstonLogger(this.w.child(fields), this.debugEnabled); }
}

export interface LoggerOptions {
  level: string;
  format: 'text' | 'json' | string;
  /** Defaults to stderr, where containerd logs too. */
  stream?: NodeJS.WritableStream;
}

/** The daemon's root logger. */
export function createLogger(opts: LoggerOptions): Logger {
  const level = winstonLevel(opts.level);
  const w = winston.createLogger({
    level,
    format: winston.format.combine(
      winston.format.timestamp(),
      winston.format.errors({ stack: false }),
      opts.format === 'json' ? winston.format.json() : textFormat,
    ),
    transports: [new winston.transports.Stream({ stream: opts.stream ?? process.stderr })],
  });
  return new WinstonLogger(w, level === 'debug' || level === 'silly');
}

/** A logger that drops everything (tests, CLI library use). */
export const silentLogger: Logger = {
  debug() {}, info() {}, warn() {}, error() {},
  child() { return silentLogger; },
  debugEnabled: false,
};
