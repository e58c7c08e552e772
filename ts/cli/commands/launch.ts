// `torch-cka launch`: torchrun for torch-cka. Starts N local processes of a
// command with torchrun's environment variables (RANK, WORLD_SIZE, ...),
// waits for them, and stops them all when one fails or the launcher is
// interrupted.
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { constants } from 'node:os';
import path from 'node:path';

import { type CommandSpec, helpText, integerValue, parse, stringValue, usageError } from '../args';
import type { Command } from '../command';

export const LAUNCH: CommandSpec = {
  name: 'launch',
  usage: 'torch-cka launch --nproc N [--nnodes M] [--node-rank K] [--master-addr HOST] [--master-port P] -- COMMAND...',
  summary:
    'Runs COMMAND in N processes ("ranks") on this host, like torchrun, and waits for them:\n' +
    'a distributed torch-cka compare, or any program that reads RANK, WORLD_SIZE, MASTER_ADDR\n' +
    'and MASTER_PORT. If a rank fails, the others are stopped.',
  positionals: { min: 0, max: Number.MAX_SAFE_INTEGER },
  options: {
    nproc: { type: 'string', value: 'N', description: 'processes to start on this host (required)' },
    nnodes: { type: 'string', value: 'M', description: 'hosts taking part, each running launch (default 1)' },
    'node-rank': { type: 'string', value: 'K', description: "this host's number, 0 to M-1 (default 0)" },
    'master-addr': {
      type: 'string',
      value: 'HOST',
      description: 'host of rank 0 (default 127.0.0.1; required with --nnodes > 1)',
    },
    'master-port': {
      type: 'string',
      value: 'P',
      description: 'port of rank 0 (default: a free port on one host, 29500 with --nnodes > 1)',
    },
  },
  notes:
    "COMMAND is a torch-cka command (compare, layers, plot, demo), run with this package's\n" +
    'own CLI, or any program with its arguments (node script.js ...), run as given without a\n' +
    'shell. Everything after -- goes to COMMAND untouched.\n' +
    '\n' +
    'Each rank gets the environment of launch plus RANK (K*N + local rank), WORLD_SIZE (M*N),\n' +
    'LOCAL_RANK, LOCAL_WORLD_SIZE (N), GROUP_RANK (K), GROUP_WORLD_SIZE (M), MASTER_ADDR and\n' +
    'MASTER_PORT, and OMP_NUM_THREADS=1 when N > 1 and OMP_NUM_THREADS is not set.\n' +
    'The ranks share the terminal (stdin, stdout, stderr). When a rank exits non-zero or is\n' +
    'killed, launch sends SIGTERM to the others (SIGKILL after 5 s) and exits with the code\n' +
    'of that rank (128 + N for signal N). SIGINT, SIGTERM or SIGHUP to launch goes to every\n' +
    'rank; launch then exits 130, 143 or 129 (a second one kills the ranks at once).\n' +
    '\n' +
    'One host, 2 processes:\n' +
    '  torch-cka launch --nproc 2 -- compare a.pt b.pt --data x.npy --out results.json\n' +
    '\n' +
    'Two hosts, 2 processes each: run on both, --node-rank 0 on HOST (where rank 0 runs)\n' +
    'and --node-rank 1 on the other:\n' +
    '  torch-cka launch --nproc 2 --nnodes 2 --node-rank 0|1 --master-addr HOST --master-port 29500 \\\n' +
    '    -- compare a.pt b.pt --data x.npy --out results.json\n' +
    '\n' +
    'torchrun runs torch-cka compare too (--no-python: the command is not a Python script):\n' +
    '  torchrun --nproc-per-node 2 --no-python node $(npm root)/torch-cka/dist/cli/main.js compare ...\n' +
    '  torchrun --nproc-per-node 2 --no-python npx torch-cka compare ...',
};

/** The torch-cka commands that launch runs with this package's own CLI. */
const CLI_COMMANDS = new Set(['compare', 'layers', 'plot', 'demo']);
/** This package's CLI (dist/cli/main.js; this file is dist/cli/commands/launch.js). */
const CLI = path.join(__dirname, '..', 'main.js');
/** Time between SIGTERM (or a forwarded signal) and SIGKILL. */
const GRACE_MS = 5000;
const DEFAULT_ADDR = '127.0.0.1';
const DEFAULT_PORT = 29500;
const WINDOWS = process.platform === 'win32';
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export interface LaunchIo {
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
  /** The environment the ranks inherit (default process.env). */
  env?: NodeJS.ProcessEnv;
}

export interface LaunchPlan {
  nproc: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  /** Undefined: pick a free port (one host only). */
  masterPort: number | undefined;
  /** COMMAND: what came after `--`. */
  command: string[];
}

/** Splits argv at the first `--`: launch's own options, then COMMAND (undefined without `--`). */
export function splitCommand(argv: readonly string[]): { own: string[]; command: string[] | undefined } {
  const at = argv.indexOf('--');
  return at < 0 ? { own: [...argv], command: undefined } : { own: argv.slice(0, at), command: argv.slice(at + 1) };
}

/** Parses and checks launch's command line; null for --help. */
export function parseLaunch(argv: readonly string[]): LaunchPlan | null {
  const { own, command } = splitCommand(argv);
  const { values, positionals } = parse(own, LAUNCH);
  if (values.help) return null;
  const nproc = integerValue(values, 'nproc', 1);
  if (nproc === undefined) throw usageError(`torch-cka launch needs --nproc N; usage: ${LAUNCH.usage}`);
  const nnodes = integerValue(values, 'nnodes', 1) ?? 1;
  const nodeRank = integerValue(values, 'node-rank', 0) ?? 0;
  if (nodeRank >= nnodes) {
    throw usageError(`Expected --node-rank from 0 to ${nnodes - 1} (--nnodes ${nnodes}) but received ${nodeRank}`);
  }
  const addr = stringValue(values, 'master-addr');
  if (nnodes > 1 && addr === undefined) {
    throw usageError(`--nnodes ${nnodes} needs --master-addr HOST: the host of node 0, the same on every host`);
  }
  let masterPort = integerValue(values, 'master-port', 1);
  if (masterPort !== undefined && masterPort > 65535) {
    throw usageError(`Expected a port from 1 to 65535 for --master-port but received '${values['master-port']}'`);
  }
  if (masterPort === undefined && nnodes > 1) masterPort = DEFAULT_PORT;
  if (positionals.length > 0) {
    throw usageError(
      `torch-cka launch runs the command after --; put -- before '${positionals.join(' ')}' ` +
        `(e.g. torch-cka launch --nproc 2 -- compare a.pt b.pt --data x.npy)`,
    );
  }
  if (command === undefined || command.length === 0 || command[0] === '') {
    throw usageError(`torch-cka launch needs a command after --; usage: ${LAUNCH.usage}`);
  }
  return { nproc, nnodes, nodeRank, masterAddr: addr ?? DEFAULT_ADDR, masterPort, command };
}

/** A free TCP port: listen on port 0 of host, read the port, close. */
export function freePort(host = DEFAULT_ADDR): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error(`no free port found on ${host}`))));
    });
  });
}

/** torchrun's variables for one rank. */
export function rankEnv(plan: LaunchPlan, masterPort: number, localRank: number): Record<string, string> {
  return {
    RANK: String(plan.nodeRank * plan.nproc + localRank),
    WORLD_SIZE: String(plan.nnodes * plan.nproc),
    LOCAL_RANK: String(localRank),
    LOCAL_WORLD_SIZE: String(plan.nproc),
    GROUP_RANK: String(plan.nodeRank),
    GROUP_WORLD_SIZE: String(plan.nnodes),
    MASTER_ADDR: plan.masterAddr,
    MASTER_PORT: String(masterPort),
  };
}

/** The program and arguments of COMMAND: torch-cka commands run with this package's CLI. */
export function resolveCommand(command: readonly string[]): { file: string; args: string[] } {
  const [first = '', ...rest] = command;
  if (CLI_COMMANDS.has(first)) return { file: process.execPath, args: [CLI, first, ...rest] };
  if (first === 'torch-cka') return { file: process.execPath, args: [CLI, ...rest] };
  return { file: first, args: rest };
}

const signalNumber = (signal: string): number => (constants.signals as Record<string, number | undefined>)[signal] ?? 0;

/** Sends a signal to a rank and its process group (each rank leads its own, as with torchrun). */
function signalRank(child: ChildProcess, signal: NodeJS.Signals): void {
  const pid = child.pid;
  if (pid === undefined) return;
  if (!WINDOWS) {
    try {
      process.kill(-pid, signal);
      return;
    } catch {
      // No such group (the rank is gone or changed its group): try the process itself.
    }
  }
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function startError(program: string, rank: number, error: NodeJS.ErrnoException): Error {
  const why =
    error.code === 'ENOENT'
      ? `'${program}' was not found (not a torch-cka command, nor a program on PATH)`
      : error.code === 'EACCES'
        ? `'${program}' is not executable`
        : `'${program}' could not be started`;
  return Object.assign(new Error(`launch: rank ${rank}: ${why} (${error.message})`), {
    code: error.code ?? 'ERR_SPAWN',
  });
}

/** Starts the ranks and resolves to launch's exit code when all have exited; rejects if one cannot start. */
function supervise(
  plan: LaunchPlan,
  masterPort: number,
  env: NodeJS.ProcessEnv,
  stderr: NodeJS.WritableStream,
): Promise<number> {
  const { file, args } = resolveCommand(plan.command);
  return new Promise((resolve, reject) => {
    /** The first failure or signal decides the exit code. */
    let outcome: { status: number } | { error: Error } | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    const running = new Map<number, ChildProcess>();
    let pending = plan.nproc;

    const killAll = (): void => {
      for (const child of running.values()) signalRank(child, 'SIGKILL');
    };
    const stopAll = (signal: NodeJS.Signals): void => {
      for (const child of running.values()) signalRank(child, signal);
      if (killTimer === undefined && running.size > 0) killTimer = setTimeout(killAll, GRACE_MS);
    };
    const fail = (result: { status: number } | { error: Error }): void => {
      if (outcome !== undefined) return;
      outcome = result;
      stopAll('SIGTERM');
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      if (outcome === undefined) {
        outcome = { status: 128 + signalNumber(signal) };
        if (running.size > 0) stderr.write(`torch-cka launch: ${signal}: stopping the ranks\n`);
        stopAll(signal);
      } else if (running.size > 0) {
        stderr.write(`torch-cka launch: ${signal} again: killing the ranks\n`);
        killAll();
      }
    };
    const handlers = FORWARDED.map((signal) => [signal, () => onSignal(signal)] as const);
    const finish = (): void => {
      if (killTimer !== undefined) clearTimeout(killTimer);
      for (const [signal, handler] of handlers) process.off(signal, handler);
      process.off('exit', killAll);
      if (outcome !== undefined && 'error' in outcome) reject(outcome.error);
      else resolve(outcome?.status ?? 0);
    };
    const settle = (): void => {
      pending -= 1;
      if (pending === 0) finish();
    };

    for (const [signal, handler] of handlers) process.on(signal, handler);
    // Should launch itself die of an error, take the ranks with it.
    process.on('exit', killAll);

    for (let local = 0; local < plan.nproc; local += 1) {
      const rank = plan.nodeRank * plan.nproc + local;
      if (outcome !== undefined) {
        settle();
        continue;
      }
      let child: ChildProcess;
      try {
        child = spawn(file, args, {
          env: { ...env, ...rankEnv(plan, masterPort, local) },
          stdio: 'inherit',
          // Each rank in its own session and process group, like torchrun: a Ctrl-C in the
          // terminal reaches launch only, which passes it on once.
          detached: !WINDOWS,
        });
      } catch (error) {
        fail({ error: startError(plan.command[0] ?? '', rank, error as NodeJS.ErrnoException) });
        settle();
        continue;
      }
      let done = false;
      child.on('error', (error: NodeJS.ErrnoException) => {
        // Errors of a started process (a failed kill) change nothing; a failed start ends the rank.
        if (done || child.pid !== undefined) return;
        done = true;
        fail({ error: startError(plan.command[0] ?? '', rank, error) });
        settle();
      });
      child.on('exit', (code, signal) => {
        if (done) return;
        done = true;
        running.delete(local);
        const status = signal ? 128 + signalNumber(signal) : (code ?? 1);
        if (status !== 0 && outcome === undefined) {
          const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
          const others = running.size > 0 ? '; stopping the other ranks' : '';
          stderr.write(`torch-cka launch: rank ${rank} (pid ${child.pid}) ${how}${others}\n`);
          fail({ status });
        }
        settle();
      });
      if (child.pid !== undefined) running.set(local, child);
    }
  });
}

/** `torch-cka launch`; resolves to the exit code. */
export async function runLaunch(argv: readonly string[], io: LaunchIo = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const plan = parseLaunch(argv);
  if (plan === null) {
    stdout.write(helpText(LAUNCH));
    return 0;
  }
  const env: NodeJS.ProcessEnv = { ...(io.env ?? process.env) };
  if (env.OMP_NUM_THREADS === undefined && plan.nproc > 1) {
    env.OMP_NUM_THREADS = '1';
    stderr.write(
      `torch-cka launch: OMP_NUM_THREADS=1 for each of the ${plan.nproc} processes (set it to change this)\n`,
    );
  }
  const masterPort = plan.masterPort ?? (await freePort());
  return supervise(plan, masterPort, env, stderr);
}

export const launch: Command = { spec: LAUNCH, run: (argv) => runLaunch(argv) };
