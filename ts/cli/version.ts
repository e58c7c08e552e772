import { readFileSync } from 'node:fs';
import path from 'node:path';

let version: string | undefined;

/** This package's version, from its package.json. */
export function packageVersion(): string {
  if (version === undefined) {
    const file = path.join(__dirname, '..', '..', 'package.json');
    version = (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return version;
}

/** The package's root folder (where package.json and demo/ are). */
export const packageRoot = (): string => path.join(__dirname, '..', '..');
