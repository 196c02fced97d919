/** Public surface of the mount package (import from here rather than from individual files). */
export { type Mount, mountpointOf } from './types.js';
export { parseMountOptions, compactLowerdirOption, type ParsedMountOptions } from './options.js';
export { mountOne, mountAll, unmount, unmountAll } from './mount.js';
export {
  withTempMount, withReadonlyTempMount, readonlyMounts, removeVolatileOption,
  setTempMountLocation, getTempMountLocation, type TempMountOptions,
} from './temp.js';
export {
  mountInfo, parseMountInfo, parseMountInfoLine, unescapeMountField, lookupMount, isMountPoint, fsTypeOf,
  type MountInfo,
} from './mountinfo.js';
export { mountCommandLine, mountLookupCommand, shellQuote, type RenderOptions } from './format.js';
export { setupLoop, detachLoop, type LoopDevice, type LoopParams } from './loop.js';
export * from './flags.js';
