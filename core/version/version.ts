/**
 * What berthd reports as its version. The containerd API level comes first so clients that
 * compare versions treat berthd as the containerd release whose API it serves; berth's own
 * version rides along as semver build metadata.
 */
export const BERTH_VERSION = '0.1.0';
export const API_COMPAT_VERSION = '1.6.20';
export const SERVER_VERSION = `${API_COMPAT_VERSION}+berth.${BERTH_VERSION}`;
/** Replaced at build time with the git commit (see scripts/build.mjs). */
declare const __BERTH_REVISION__: string | undefined;
export const REVISION = typeof __BERTH_REVISION__ === 'string' ? __BERTH_REVISION__ : 'dev';
