// Loading a model file once in a child process before loading it here.
// libtorch's TorchScript reader trusts its input: a damaged or crafted file
// (a bad pickle opcode, mangled code) can crash it with a segfault, which no
// error handling can catch and which would take the whole Node process down.
// A child process takes that risk instead; a crash there becomes
// ERR_MODEL_LOAD here. The child stays up while there is work (so checking
// many files costs one start) and exits when idle for a few seconds. Files
// that passed are remembered (by path, size, mtime and inode).
import { type ChildProcess, fork } from 'node:child_process';
import { stat } from 'node:fs/promises';
import path from 'node:path';

import { type ErrorCode, ErrorCodes, makeError } from '../util/errors';

/** What the child sends back for one file: nothing to report, or the error it got. */
interface Report {
  id: number;
  ok?: boolean;
  code?: ErrorCode;
  name?: string;
  message?: string;
}

interface Pending {
  file: string;
  child: ChildProcess;
  resolve: () => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

const CHILD = path.join(__dirname, 'verify-child.js');
const verified = new Set<string>();
const pending = new Map<number, Pending>();
let child: ChildProcess | undefined;
let nextId = 1;
let idleTimer: NodeJS.Timeout | undefined;
const IDLE_MS = 5000;

async function identity(file: string): Promise<{ key: string; size: number } | null> {
  try {
    const info = await stat(file);
    return { key: `${path.resolve(file)}\0${info.size}\0${info.mtimeMs}\0${info.ino}`, size: info.size };
  } catch {
    return null; // the load itself reports a missing file
  }
}

function crashed(file: string, how: string): Error {
  return makeError(
    Error,
    ErrorCodes.MODEL_LOAD,
    `Could not load '${file}' as a TorchScript model: libtorch crashed reading it (${how}), so the file is damaged ` +
      'or was crafted. Save or download it again (this process is unharmed: the file was read in a separate process first)',
  );
}

function settle(id: number): Pending | undefined {
  const entry = pending.get(id);
  if (!entry) return undefined;
  pending.delete(id);
  clearTimeout(entry.timer);
  if (pending.size === 0 && child) {
    const idle = child;
    idle.unref();
    (idle.channel as { unref?: () => void } | undefined)?.unref?.();
    // Stop the child when no file has come for a while.
    idleTimer = setTimeout(() => {
      if (pending.size === 0 && child === idle) {
        child = undefined;
        idle.kill();
      }
    }, IDLE_MS);
    idleTimer.unref();
  }
  return entry;
}

function worker(): ChildProcess {
  if (child && child.exitCode === null && child.signalCode === null && child.connected) return child;
  // stdio ignored: libtorch may print before it crashes, and an open pipe would keep this process alive.
  const started = fork(CHILD, [], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'], serialization: 'json' });
  started.on('message', (message: Report) => {
    const entry = settle(message.id);
    if (!entry) return;
    if (message.ok) {
      entry.resolve();
      return;
    }
    const Kind = message.name === 'TypeError' ? TypeError : message.name === 'RangeError' ? RangeError : Error;
    entry.reject(makeError(Kind, message.code ?? ErrorCodes.MODEL_LOAD, message.message ?? 'unknown error'));
  });
  started.on('exit', (code, signal) => {
    if (child === started) child = undefined;
    // Requests still open when the child ends: libtorch crashed on one.
    const how = signal ?? `exit code ${String(code)}`;
    for (const [id, entry] of [...pending]) {
      if (entry.child !== started) continue;
      settle(id);
      entry.reject(crashed(entry.file, how));
    }
  });
  started.on('error', () => undefined); // 'exit' follows
  child = started;
  return started;
}

/** Resolves when `file` loads in the child process; rejects with the error it would give, or ERR_MODEL_LOAD on a crash. */
export async function verifyModelFile(file: string): Promise<void> {
  const found = await identity(file);
  if (found === null || verified.has(found.key)) return;
  // Generous: reading a model is I/O bound; 60 s plus 10 s per 100 MB.
  const timeout = 60_000 + Math.ceil(found.size / 100e6) * 10_000;
  const id = nextId++;
  await new Promise<void>((resolve, reject) => {
    clearTimeout(idleTimer);
    const process = worker();
    const timer = setTimeout(() => {
      settle(id)?.reject(
        makeError(
          Error,
          ErrorCodes.MODEL_LOAD,
          `libtorch did not finish reading '${file}' within ${timeout / 1000} s; the file is damaged or was crafted`,
        ),
      );
      process.kill('SIGKILL');
    }, timeout);
    pending.set(id, { file, child: process, resolve, reject, timer });
    process.ref();
    (process.channel as { ref?: () => void } | undefined)?.ref?.();
    process.send({ id, file });
  });
  verified.add(found.key);
}
