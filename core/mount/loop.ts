/**
 * Loop devices for the "loop" mount option: attaches a filesystem image file to a free
 * /dev/loopN so it can be mounted like a block device. With `autoclear` the kernel detaches
 * the device by itself once the last user (the mount) is gone, so nothing has to remember it.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { endianness } from 'node:os';
import { hasErrnoCode } from '../sys/errno.js';
import { ioctl } from '../sys/syscalls.js';

const LOOP_SET_FD = 0x4c00;
const LOOP_CLR_FD = 0x4c01;
const LOOP_SET_STATUS64 = 0x4c04;
const LOOP_CONFIGURE = 0x4c0a;
const LOOP_CTL_GET_FREE = 0x4c82;

const LO_FLAGS_READ_ONLY = 1;
const LO_FLAGS_AUTOCLEAR = 4;
const LO_FLAGS_DIRECT_IO = 16;

// struct loop_info64 is 232 bytes with lo_flags at offset 52; struct loop_config is
// { u32 fd; u32 block_size; loop_info64 info; u64 reserved[8] } = 304 bytes.
const LOOP_INFO64_SIZE = 232;
const LO_FLAGS_OFFSET = 52;
const LOOP_CONFIG_SIZE = 304;
const CONFIG_INFO_OFFSET = 8;

// Another process can grab the device between GET_FREE and attaching (EBUSY): retry a few times.
const ATTACH_ATTEMPTS = 20;

export interface LoopParams {
  readonly?: boolean;
  autoclear?: boolean;
  directIO?: boolean;
}

export interface LoopDevice {
  /** e.g. "/dev/loop3" */
  path: string;
  /** Open descriptor of the device; close it (fs.closeSync) once the device is mounted. */
  fd: number;
}

// (Node opens every file with O_CLOEXEC already, so children never inherit these fds.)
export function setupLoop(backingFile: string, params: LoopParams = {}): LoopDevice {
  const mode = params.readonly ? constants.O_RDONLY : constants.O_RDWR;
  const backing = openSync(backingFile, mode);
  try {
    const loFlags =
      (params.readonly ? LO_FLAGS_READ_ONLY : 0) |
      (params.autoclear ? LO_FLAGS_AUTOCLEAR : 0) |
      (params.directIO ? LO_FLAGS_DIRECT_IO : 0);
    let lastErr: unknown;
    for (let attempt = 0; attempt < ATTACH_ATTEMPTS; attempt++) {
      const path = `/dev/loop${freeLoopNumber()}`;
      const fd = openSync(path, mode);
      try {
        attach(fd, backing, loFlags, path);
        return { path, fd };
      } catch (err) {
        closeSync(fd);
        if (!hasErrnoCode(err, 'EBUSY')) throw err;
        lastErr = err;
      }
    }
    throw lastErr;
  } finally {
    // The loop device holds its own reference to the backing file.
    closeSync(backing);
  }
}

/** Detaches a loop device explicitly (only needed without autoclear). */
export function detachLoop(device: string): void {
  const fd = openSync(device, constants.O_RDONLY);
  try {
    ioctl(fd, LOOP_CLR_FD, 0, device);
  } finally {
    closeSync(fd);
  }
}

function freeLoopNumber(): number {
  const ctl = openSync('/dev/loop-control', constants.O_RDWR);
  try {
    return ioctl(ctl, LOOP_CTL_GET_FREE, 0, '/dev/loop-control');
  } finally {
    closeSync(ctl);
  }
}

function attach(loopFd: number, backingFd: number, loFlags: number, path: string): void {
  // LOOP_CONFIGURE (Linux 5.8) attaches and sets flags atomically.
  const config = Buffer.alloc(LOOP_CONFIG_SIZE);
  writeU32(config, 0, backingFd);
  writeU32(config, CONFIG_INFO_OFFSET + LO_FLAGS_OFFSET, loFlags);
  try {
    ioctl(loopFd, LOOP_CONFIGURE, config, path);
    return;
  } catch (err) {
    if (!hasErrnoCode(err, 'EINVAL') && !hasErrnoCode(err, 'ENOTTY')) throw err;
  }
  // Older kernels: attach, then set the flags; undo the attach if that fails.
  ioctl(loopFd, LOOP_SET_FD, backingFd, path);
  const info = Buffer.alloc(LOOP_INFO64_SIZE);
  writeU32(info, LO_FLAGS_OFFSET, loFlags);
  try {
    ioctl(loopFd, LOOP_SET_STATUS64, info, path);
  } catch (err) {
    ioctl(loopFd, LOOP_CLR_FD, 0, path);
    throw err;
  }
}

/** The structs are read by the kernel in native byte order. */
function writeU32(buf: Buffer, offset: number, value: number): void {
  if (endianness() === 'LE') buf.writeUInt32LE(value, offset);
  else buf.writeUInt32BE(value, offset);
}
