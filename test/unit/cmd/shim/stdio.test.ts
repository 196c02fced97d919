/**
 * Pipe-based stdio against real FIFOs and a real child process standing in for the container
 * (what runc would hand the pipes to), and the console socket against a sender of SCM_RIGHTS.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConsoleSocket } from '../../../../cmd/containerd-shim-berth-v2/console.js';
import { isNullStdio, PipeIO } from '../../../../cmd/containerd-shim-berth-v2/stdio.js';
import { tempDir } from '../../../helpers/tmp.js';

function fifos(...names: string[]): string[] {
  const dir = tempDir('shim-stdio-');
  const paths = names.map((n) => join(dir, n));
  execFileSync('mkfifo', paths);
  return paths;
}

function reader(path: string): { text: () => string; ended: Promise<void> } {
  const socket = new Socket({ fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  const ended = new Promise<void>((resolve) => socket.once('end', () => resolve()));
  return { text: () => text, ended };
}

test('pipes: the process gets stdin until CloseIO, its output reaches the FIFOs, EOF follows', async () => {
  const [stdin, stdout, stderr] = fifos('in', 'out', 'err') as [string, string, string];
  const out = reader(stdout);
  const err = reader(stderr);
  const io = new PipeIO({ stdin, stdout, stderr, terminal: false });
  const child = spawn('sh', ['-c', 'cat; echo done >&2'], { stdio: io.childStdio });
  io.releaseChildEnds();
  io.start();
  const client = openSync(stdin, constants.O_WRONLY | constants.O_NONBLOCK);
  writeSync(client, 'abc\n');
  closeSync(client);
  // The client closed its writer, but the shim still holds one: no EOF before CloseIO.
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.equal(child.exitCode, null);
  io.closeStdin();
  const code = await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(code, 0);
  await io.outputDone;
  await Promise.all([out.ended, err.ended]);
  assert.equal(out.text(), 'abc\n');
  assert.equal(err.text(), 'done\n');
  io.close();
});

test('pipes: only requested streams get pipes; the rest is /dev/null', () => {
  const [stdout] = fifos('out') as [string];
  const io = new PipeIO({ stdin: '', stdout, stderr: '', terminal: false });
  assert.equal(io.childStdio[0], 'ignore');
  assert.equal(typeof io.childStdio[1], 'number');
  assert.equal(io.childStdio[2], 'ignore');
  io.close();
  assert.equal(isNullStdio({ stdin: '', stdout: '', stderr: '', terminal: false }), true);
  assert.equal(isNullStdio({ stdin: '', stdout: '', stderr: '', terminal: true }), false);
});

test('pipes: output to a plain file (file:// or a path that is not a FIFO) is appended', async () => {
  const dir = tempDir('shim-stdio-file-');
  const file = join(dir, 'log');
  execFileSync('sh', ['-c', `printf 'old\\n' > ${file}`]);
  const io = new PipeIO({ stdin: '', stdout: `file://${file}`, stderr: file, terminal: false });
  const child = spawn('sh', ['-c', 'echo one; echo two >&2'], { stdio: io.childStdio });
  io.releaseChildEnds();
  io.start();
  await new Promise((resolve) => child.once('exit', resolve));
  await io.outputDone;
  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean).sort();
  assert.deepEqual(lines, ['old', 'one', 'two']);
  io.close();
});

test('unsupported stdio schemes are rejected', () => {
  assert.throws(() => {
    const io = new PipeIO({ stdin: '', stdout: 'binary:///usr/bin/logger', stderr: '', terminal: false });
    try {
      io.start();
    } finally {
      io.close();
    }
  }, /unsupported STDIO scheme binary/);
});

test('console socket: receives the descriptor and message sent with SCM_RIGHTS', async () => {
  const socket = new ConsoleSocket();
  try {
    const dir = tempDir('shim-console-');
    const marker = join(dir, 'marker');
    execFileSync('sh', ['-c', `printf 'via fd' > ${marker}`]);
    // runc's role: connect and send a descriptor along with the pty name.
    execFileSync('python3', ['-c', [
      'import socket, os, sys',
      's = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])',
      'fd = os.open(sys.argv[2], os.O_RDONLY)',
      'socket.send_fds(s, [b"/dev/pts/42"], [fd])',
    ].join('\n'), socket.path, marker]);
    const received = await socket.receiveMaster(2000);
    assert.equal(received.message, '/dev/pts/42');
    assert.equal(readFileSync(received.fd, 'utf8'), 'via fd');
    closeSync(received.fd);
  } finally {
    socket.close();
  }
});

test('console socket: times out when the runtime never connects', async () => {
  const socket = new ConsoleSocket();
  try {
    await assert.rejects(socket.receiveMaster(50), /timed out/);
  } finally {
    socket.close();
  }
});
