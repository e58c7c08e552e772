// File helpers of the data readers: errors that name the file, checked reads, temporary folders.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type CKAError, ErrorCodes, makeError } from '../util/errors';

export const notFound = (message: string): CKAError => makeError(Error, ErrorCodes.DATA_NOT_FOUND, message);
export const badFormat = (message: string): CKAError => makeError(Error, ErrorCodes.DATA_FORMAT, message);
export const truncated = (message: string): CKAError => makeError(Error, ErrorCodes.DATA_TRUNCATED, message);

/** Stats a path; a missing or unreadable one is ERR_DATA_NOT_FOUND naming it. */
export async function statPath(file: string, what: string): Promise<fs.Stats> {
  try {
    return await fs.promises.stat(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw notFound(`Expected ${what} at ${file} but found nothing there`);
    }
    throw notFound(`Could not read ${file}: ${(error as Error).message}`);
  }
}

/** Stats a path that must be a regular file. */
export async function statFile(file: string, what: string): Promise<fs.Stats> {
  const stats = await statPath(file, what);
  if (!stats.isFile()) throw badFormat(`Expected ${what} at ${file} but found a folder`);
  return stats;
}

/** Opens a file for reading; failures are ERR_DATA_NOT_FOUND naming it. */
export async function openFile(file: string): Promise<fs.promises.FileHandle> {
  try {
    return await fs.promises.open(file, 'r');
  } catch (error) {
    throw notFound(`Could not open ${file}: ${(error as Error).message}`);
  }
}

const MAX_READ = 1 << 30;

/**
 * Reads up to `length` bytes at `position` into `target` at `offset`,
 * looping over short reads; returns the bytes read (less only at the end of the file).
 */
export async function readAt(
  handle: fs.promises.FileHandle,
  target: Uint8Array,
  offset: number,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(target, offset + done, Math.min(length - done, MAX_READ), position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/** Reads the first `length` bytes of a file (fewer if it is shorter). */
export async function readHead(file: string, length: number): Promise<Uint8Array> {
  const handle = await openFile(file);
  try {
    const head = new Uint8Array(length);
    const got = await readAt(handle, head, 0, length, 0);
    return head.subarray(0, got);
  } finally {
    await handle.close();
  }
}

/** Hex bytes for messages: "93 4e 55 4d". */
export const hex = (bytes: Uint8Array): string =>
  bytes.length === 0 ? '(no bytes)' : Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');

const liveTempDirs = new Set<string>();
let exitHookInstalled = false;

/** A fresh folder in os.tmpdir(); removed by {@link removeTempDir}, or at process exit at the latest. */
export async function makeTempDir(): Promise<string> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'torch-cka-'));
  liveTempDirs.add(dir);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const left of liveTempDirs) fs.rmSync(left, { recursive: true, force: true });
    });
  }
  return dir;
}

export async function removeTempDir(dir: string): Promise<void> {
  await fs.promises.rm(dir, { recursive: true, force: true });
  liveTempDirs.delete(dir);
}
