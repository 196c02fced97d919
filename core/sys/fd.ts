/**
 * Promise forms of the descriptor calls of Node's callback fs API. The content store and the
 * layer applier make thousands of these per pull; the callback API with a bare promise costs
 * less per call than fs/promises and its FileHandle objects.
 */
import * as fs from 'node:fs';

const settle = <T>(resolve: (v: T) => void, reject: (e: Error) => void) => (err: Error | null, value?: T) =>
  err ? reject(err) : resolve(value as T);

export const openFd = (path: string, flags: number, mode: number) =>
  new Promise<number>((resolve, reject) => fs.open(path, flags, mode, settle(resolve, reject)));

export const closeFd = (fd: number) => new Promise<void>((resolve, reject) => fs.close(fd, settle(resolve, reject)));

export const fsyncFd = (fd: number) => new Promise<void>((resolve, reject) => fs.fsync(fd, settle(resolve, reject)));

export const fdatasyncFd = (fd: number) => new Promise<void>((resolve, reject) => fs.fdatasync(fd, settle(resolve, reject)));

export const fstatFd = (fd: number) => new Promise<fs.Stats>((resolve, reject) => fs.fstat(fd, settle(resolve, reject)));

export const ftruncateFd = (fd: number, length = 0) =>
  new Promise<void>((resolve, reject) => fs.ftruncate(fd, length, settle(resolve, reject)));

export const fchownFd = (fd: number, uid: number, gid: number) =>
  new Promise<void>((resolve, reject) => fs.fchown(fd, uid, gid, settle(resolve, reject)));

export const fchmodFd = (fd: number, mode: number) => new Promise<void>((resolve, reject) => fs.fchmod(fd, mode, settle(resolve, reject)));

export const futimesFd = (fd: number, atime: Date, mtime: Date) =>
  new Promise<void>((resolve, reject) => fs.futimes(fd, atime, mtime, settle(resolve, reject)));

/** Writes all of `data` at `position`, looping over short writes (a zero-byte write is EIO). */
export function writeAllAt(fd: number, data: Uint8Array, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (done: number) => {
      fs.write(fd, data, done, data.length - done, position + done, (err, n) => {
        if (err) return reject(err);
        if (done + n >= data.length) return resolve();
        if (n === 0) return reject(Object.assign(new Error('short write'), { code: 'EIO' }));
        step(done + n);
      });
    };
    step(0);
  });
}
