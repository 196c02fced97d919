/**
 * The daemon configuration: containerd's config.toml (version 2) schema with berth's
 * defaults. Keys are the TOML keys verbatim so they stay greppable against containerd docs.
 */

export interface GrpcConfig {
  address: string;
  tcp_address: string;
  tcp_tls_ca: string;
  tcp_tls_cert: string;
  tcp_tls_key: string;
  uid: number;
  gid: number;
  max_recv_message_size: number;
  max_send_message_size: number;
}

export interface TtrpcConfig {
  /** Empty means `<grpc.address>.ttrpc`. */
  address: string;
  uid: number;
  gid: number;
}

export interface DebugConfig {
  address: string;
  uid: number;
  gid: number;
  level: string;
  /** "text" or "json". */
  format: string;
}

export interface MetricsConfig {
  address: string;
  grpc_histogram: boolean;
}

export interface ProxyPluginConfig {
  type: string;
  address: string;
}

export interface StreamProcessorConfig {
  accepts: string[];
  returns: string;
  path: string;
  args: string[];
  env: string[];
}

export interface DaemonConfig {
  version: number;
  root: string;
  state: string;
  temp: string;
  plugin_dir: string;
  disabled_plugins: string[];
  required_plugins: string[];
  oom_score: number;
  imports: string[];
  grpc: GrpcConfig;
  ttrpc: TtrpcConfig;
  debug: DebugConfig;
  metrics: MetricsConfig;
  cgroup: { path: string };
  timeouts: Record<string, string>;
  stream_processors: Record<string, StreamProcessorConfig>;
  /** `[plugins."<type>.<id>"]` tables, validated by each plugin's typed config. */
  plugins: Record<string, Record<string, unknown>>;
  proxy_plugins: Record<string, ProxyPluginConfig>;
}

export const DEFAULT_ROOT = '/var/lib/berth';
export const DEFAULT_STATE = '/run/berth';
export const DEFAULT_ADDRESS = '/run/berth/berth.sock';
export const DEFAULT_CONFIG_PATH = '/etc/berth/config.toml';
/** 16 MiB, containerd's default message limit in both directions. */
export const DEFAULT_MAX_MESSAGE = 16 << 20;

/** containerd's timeout keys and defaults. */
export const DEFAULT_TIMEOUTS: Readonly<Record<string, string>> = Object.freeze({
  'io.containerd.timeout.bolt.open': '0s',
  'io.containerd.timeout.shim.cleanup': '5s',
  'io.containerd.timeout.shim.load': '5s',
  'io.containerd.timeout.shim.shutdown': '3s',
  'io.containerd.timeout.task.state': '2s',
});

/** A fresh config holding every default. */
export function defaultConfig(): DaemonConfig {
  return {
    version: 2,
    root: DEFAULT_ROOT,
    state: DEFAULT_STATE,
    temp: '',
    plugin_dir: '',
    disabled_plugins: [],
    required_plugins: [],
    oom_score: 0,
    imports: [],
    grpc: {
      address: DEFAULT_ADDRESS,
      tcp_address: '',
      tcp_tls_ca: '',
      tcp_tls_cert: '',
      tcp_tls_key: '',
      uid: 0,
      gid: 0,
      max_recv_message_size: DEFAULT_MAX_MESSAGE,
      max_send_message_size: DEFAULT_MAX_MESSAGE,
    },
    ttrpc: { address: '', uid: 0, gid: 0 },
    debug: { address: '', uid: 0, gid: 0, level: 'info', format: 'text' },
    metrics: { address: '', grpc_histogram: false },
    cgroup: { path: '' },
    timeouts: { ...DEFAULT_TIMEOUTS },
    stream_processors: {},
    plugins: {},
    proxy_plugins: {},
  };
}

/** The ttrpc address the daemon serves (and tells shims through TTRPC_ADDRESS). */
export function ttrpcAddress(cfg: DaemonConfig): string {
  return cfg.ttrpc.address || `${cfg.grpc.address}.ttrpc`;
}
