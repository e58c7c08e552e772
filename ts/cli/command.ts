// What a CLI command is: its option table and help (a CommandSpec, which
// args.ts parses and prints) and its handler. main.ts registers the commands.
import type { CommandSpec } from './args';

export interface Command {
  /** The name, usage, summary, option table and notes: what parse() reads and --help prints. */
  spec: CommandSpec;
  /** Runs the command on the arguments after its name; resolves to the exit code, or nothing for 0. */
  run(argv: string[]): Promise<number | void>;
}
