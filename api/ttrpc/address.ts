/**
 * containerd's ttrpc address convention: "unix:///path" names a socket file, while an
 * address without the scheme names a Linux abstract socket (what shims of containerd
 * 1.5 and earlier used). Node reaches abstract sockets through a leading NUL byte.
 */

const UNIX_SCHEME = 'unix://';

/** The path to hand to net.connect / net.Server.listen for a ttrpc address. */
export function socketPath(address: string): string {
  if (address.startsWith(UNIX_SCHEME)) return address.slice(UNIX_SCHEME.length);
  if (address.startsWith('\0')) return address;
  return `\0${address}`;
}

export function isAbstract(address: string): boolean {
  return socketPath(address).startsWith('\0');
}
