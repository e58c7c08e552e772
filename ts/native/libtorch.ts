// The libtorch the addon runs on: which version the process loaded, whether it
// is the one the addon was built for, and what to tell a user when it is not
// (or when the addon cannot be loaded at all). libtorch has no stable ABI
// across versions, so a binary built for one must not run on another.
import fs from 'node:fs';
import path from 'node:path';

import { ErrorCodes, makeError } from '../util/errors';

/** What `npm run prebuild` records beside a prebuilt binary (prebuilds/<platform>-<arch>/libtorch.json). */
export interface LibtorchRecord {
  version: string;
  /** _GLIBCXX_USE_CXX11_ABI of that libtorch: '0', '1' or null when unknown. */
  abi: string | null;
  cuda: boolean;
  /** Where it came from: 'system', 'LIBTORCH', 'Python torch (...)', ... */
  source: string;
}

const REBUILD =
  'Rebuild torch-cka from source against the libtorch you use: `LIBTORCH=/path/to/libtorch npm rebuild torch-cka ' +
  "--build-from-source` (or with Debian/Ubuntu's libtorch-dev, or a Python torch on PATH: `npm rebuild torch-cka " +
  '--build-from-source`); see docs/install.md in the torch-cka repository';

/** "1.13.0a0", "2.1.0+cu121" and "2.1.0" all give "2.1.0"-style major.minor.patch; null for no version. */
export function releaseOf(version: string | null | undefined): string | null {
  const match = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(version?.trim() ?? '');
  return match ? `${match[1]}.${match[2]}.${match[3] ?? '0'}` : null;
}

/**
 * The version of the libtorch whose libtorch_cpu is `file`: from the file
 * name behind its symlinks (Debian: libtorch_cpu.so.1.13.0), else from
 * `version.py` beside a Python torch's lib folder, else from the
 * `build-version` file of a pytorch.org libtorch folder; null if none says.
 */
export function libtorchVersionOf(file: string): string | null {
  if (!file) return null;
  let real = file;
  try {
    real = fs.realpathSync(file);
  } catch {
    // keep the name as the loader gave it
  }
  const named = /libtorch_cpu\.so\.(\d+\.\d+\.\d+)/.exec(path.basename(real));
  if (named?.[1]) return named[1];
  for (const dir of [path.dirname(file), path.dirname(real)]) {
    try {
      const text = fs.readFileSync(path.join(dir, '..', 'version.py'), 'utf8');
      const match = /__version__\s*=\s*['"]([^'"]+)['"]/.exec(text);
      if (match?.[1]) return match[1];
    } catch {
      // not a Python torch
    }
    try {
      const text = fs.readFileSync(path.join(dir, '..', 'build-version'), 'utf8').trim();
      if (text) return text;
    } catch {
      // not a pytorch.org libtorch folder
    }
  }
  return null;
}

/**
 * Throws ERR_LIBTORCH_VERSION when the libtorch in the process is another
 * release than the one the addon was built for. An unknown version passes.
 */
export function checkLoadedLibtorch(builtFor: string, loadedFile: string): void {
  const loaded = libtorchVersionOf(loadedFile);
  const want = releaseOf(builtFor);
  const have = releaseOf(loaded);
  if (want === null || have === null || want === have) return;
  throw makeError(
    Error,
    ErrorCodes.LIBTORCH_VERSION,
    `torch-cka was built for libtorch ${builtFor}, but this process loaded libtorch ${loaded} (${loadedFile}). ${REBUILD}`,
  );
}

/** The libtorch.json beside a prebuilt binary, if there is one. */
export function readLibtorchRecord(binary: string | undefined): LibtorchRecord | null {
  if (!binary) return null;
  try {
    return JSON.parse(fs.readFileSync(path.join(path.dirname(binary), 'libtorch.json'), 'utf8')) as LibtorchRecord;
  } catch {
    return null;
  }
}

/** The message for an addon that the dynamic loader refused, with what it was built for and how to mend it. */
export function loadFailureMessage(cause: unknown, binary: string | undefined): string {
  const reason = (cause instanceof Error ? cause.message : String(cause)).split('\n')[0] ?? '';
  const record = readLibtorchRecord(binary);
  const lines = [`Could not load the torch-cka native addon${binary ? ` (${binary})` : ''}: ${reason}`];
  const aboutLibtorch = /libtorch|libc10|undefined symbol|version `GLIBCXX/.test(reason);
  if (record) {
    lines.push(
      `It is a prebuilt binary for libtorch ${record.version}${record.cuda ? ' with CUDA' : ' (CPU)'}` +
        `${record.abi === null ? '' : `, C++11 ABI ${record.abi}`}.` +
        (aboutLibtorch ? ' This process has another libtorch, or none where the loader looks.' : ''),
    );
  } else if (aboutLibtorch) {
    lines.push('The libtorch it was built against is not where the loader looks, or is another version.');
  }
  lines.push(REBUILD);
  return lines.join('\n');
}
