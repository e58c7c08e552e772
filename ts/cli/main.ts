#!/usr/bin/env node
// The `torch-cka` command. Each command lives in commands/ with its option
// table, help text and handler; this file only registers them, prints the
// main help and the version, and turns errors into exit codes.
import { ErrorCodes } from '../util/errors';
import { helpText, usageError } from './args';
import type { Command } from './command';
import { compare } from './commands/compare';
import { demo } from './commands/demo';
import { launch } from './commands/launch';
import { layers } from './commands/layers';
import { plot } from './commands/plot';
import { table } from './output';
import { packageVersion } from './version';

const COMMANDS: readonly Command[] = [compare, layers, plot, demo, launch];

const MAIN_HELP = `Usage: torch-cka <command> [options]

Compares neural networks layer by layer with Centered Kernel Alignment (CKA).

Commands:
${table(
  COMMANDS.map((c) => [`  ${c.spec.usage.replace(/^torch-cka /, '')}`, '']),
  [],
)}

Run torch-cka <command> --help for a command's options. torch-cka --version prints the version.
`;

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (name === undefined || name === '--help' || name === '-h') {
      process.stdout.write(MAIN_HELP);
      return name === undefined ? 2 : 0;
    }
    if (name === '--version' || name === '-v') {
      process.stdout.write(`${packageVersion()}\n`);
      return 0;
    }
    if (name === 'help') {
      const command = COMMANDS.find((c) => c.spec.name === rest[0]);
      process.stdout.write(command ? helpText(command.spec) : MAIN_HELP);
      return 0;
    }
    const command = COMMANDS.find((c) => c.spec.name === name);
    if (command === undefined) {
      throw usageError(`Unknown command '${name}'; the commands are ${COMMANDS.map((c) => c.spec.name).join(', ')}`);
    }
    return (await command.run(rest)) ?? 0;
  } catch (error) {
    return exitCode(error);
  }
}

/** Prints a failure as one line with its code; 2 for usage errors, 130 for an abort, else 1. */
function exitCode(error: unknown): number {
  const { code, message, name } = error as { code?: string; message?: string; name?: string };
  const line = (message ?? String(error)).replace(/\s*\n\s*/g, ' ').trim();
  process.stderr.write(`torch-cka: ${line}${code ? ` [${code}]` : ''}\n`);
  if (name === 'AbortError') return 130;
  return code === ErrorCodes.USAGE ? 2 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (status) => {
      process.exitCode = status;
    },
    (error: unknown) => {
      process.stderr.write(`torch-cka: ${String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
