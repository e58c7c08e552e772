#!/usr/bin/env node
// The `torch-cka` command: compare, layers, plot, demo, launch.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import type { OpenDatasetOptions } from '../data';
import { ErrorCodes, makeError } from '../util/errors';
import { loadModel } from '../model/model';
import { validateResult } from '../plot';
import { reportHtml } from '../report';
import {
  type CommandSpec,
  choiceValue,
  helpText,
  integerValue,
  listValue,
  parse,
  sizeValue,
  stringValue,
  usageError,
  type Values,
} from './args';
import { runCompare, writePlot } from './compare';
import { runDemo } from './demo';
import { LAUNCH, runLaunch } from './launch';
import { table, writeFileAtomic } from './output';
import { packageVersion } from './version';

const DATA_OPTIONS: CommandSpec['options'] = {
  'batch-size': { type: 'string', value: 'N', description: 'samples per batch (default 64)' },
  limit: { type: 'string', value: 'N', description: 'use at most N samples of each data set' },
  shuffle: { type: 'boolean', description: 'shuffle the samples (before --limit) with --seed' },
  seed: { type: 'string', value: 'S', description: 'seed of --shuffle (default 0)' },
  'drop-last': { type: 'boolean', description: 'drop a last batch smaller than --batch-size' },
  resize: { type: 'string', value: 'S|HxW', description: 'images: shorter side to S, or exactly H x W' },
  'center-crop': { type: 'string', value: 'S|HxW', description: 'images: crop the centre to S x S or H x W' },
  normalize: {
    type: 'string',
    value: 'NAME',
    description: 'none (default), imagenet (images), cifar10 (CIFAR-10), mnist (IDX)',
  },
  channels: { type: 'string', value: '1|3', description: 'images: 3 (default, RGB) or 1 (grey)' },
  split: { type: 'string', value: 'NAME', description: 'CIFAR-10 folder: train, test or all (default)' },
};

const COMPARE: CommandSpec = {
  name: 'compare',
  usage: 'torch-cka compare MODEL1.pt MODEL2.pt --data PATH [--data2 PATH] [options]',
  summary:
    'Computes minibatch CKA between the layers of two TorchScript models over a data set\n' +
    '(model 2 sees --data2 when given) and writes the results, a heatmap and a report.',
  positionals: { min: 2, max: 2 },
  options: {
    data: { type: 'string', short: 'd', value: 'PATH', description: 'data for model 1 (and model 2 without --data2)' },
    data2: { type: 'string', value: 'PATH', description: 'data for model 2' },
    layers1: { type: 'string', value: 'a,b,c', description: "model 1's layers; globs: layer1.*, **.relu" },
    layers2: { type: 'string', value: 'a,b,c', description: "model 2's layers (default: every submodule that runs)" },
    name1: { type: 'string', value: 'N', description: "model 1's name (default: its file's base name)" },
    name2: { type: 'string', value: 'N', description: "model 2's name" },
    device: { type: 'string', value: 'DEV', description: 'cpu (default), cuda or cuda:N' },
    threads: { type: 'string', value: 'N', description: "threads per model (default: libtorch's, OMP_NUM_THREADS)" },
    sequential: { type: 'boolean', description: 'run the two models in turn, not at once' },
    'skip-non-finite': { type: 'boolean', description: 'skip a batch with NaN/Inf in a layer (default: stop)' },
    checkpoint: {
      type: 'string',
      value: 'FILE',
      description: 'save progress to FILE as the run goes; resume from it if it exists',
    },
    'checkpoint-every': { type: 'string', value: 'N', description: 'batches between checkpoint writes (default 10)' },
    'dist-timeout': {
      type: 'string',
      value: 'S',
      description: 'distributed: seconds to wait for a missing or silent rank (default 300)',
    },
    ...DATA_OPTIONS,
    out: { type: 'string', short: 'o', value: 'FILE', description: 'write results.json (export() + the arguments)' },
    csv: { type: 'string', value: 'FILE', description: 'write the matrix as CSV with layer names' },
    plot: { type: 'string', value: 'FILE', description: 'write a heatmap (.svg or .png)' },
    report: { type: 'string', value: 'FILE', description: 'write a self-contained HTML report' },
    title: { type: 'string', value: 'T', description: 'title of the heatmap and report' },
    quiet: { type: 'boolean', short: 'q', description: 'print nothing but errors' },
    verbose: { type: 'boolean', description: 'list each layer left out of the default layers, with why' },
  },
  notes:
    'Data: a .npy array (N x ...), CIFAR-10 binary batches (a .bin file or their folder),\n' +
    'an MNIST-style IDX image file (gzipped or not), or a folder of JPEG/PNG/WebP images.\n' +
    'Layer patterns: * matches within one dotted segment, ** across them, ? one character.\n' +
    'Under torch-cka launch or torchrun (WORLD_SIZE > 1) the batches are shared among the\n' +
    'processes; rank 0 prints the progress and writes the files. See torch-cka launch --help.',
};

const LAYERS: CommandSpec = {
  name: 'layers',
  usage: 'torch-cka layers MODEL.pt [--json]',
  summary: "Lists a model's named submodules with their types, in definition order.",
  positionals: { min: 1, max: 1 },
  options: {
    json: { type: 'boolean', description: 'print JSON: [{ "name", "type" }, ...]' },
    device: { type: 'string', value: 'DEV', description: 'device to load the model on (default cpu)' },
  },
};

const PLOT: CommandSpec = {
  name: 'plot',
  usage: 'torch-cka plot results.json --out heatmap.png [--title T]',
  summary: 'Draws the heatmap (.svg or .png) or the HTML report (.html) of a results.json from compare.',
  positionals: { min: 1, max: 1 },
  options: {
    out: { type: 'string', short: 'o', value: 'FILE', description: 'the picture to write: .svg, .png or .html' },
    title: { type: 'string', value: 'T', description: 'title (default: the model names)' },
  },
};

const DEMO: CommandSpec = {
  name: 'demo',
  usage: 'torch-cka demo [--out DIR]',
  summary:
    'Compares the two small models that ship with torch-cka (a CNN and an MLP trained on\n' +
    "scikit-learn's 8x8 digits) on 360 held-out digits, prints a summary and writes\n" +
    'results.json, results.csv, heatmap.svg, heatmap.png and report.html.',
  positionals: { min: 0, max: 0 },
  options: {
    out: { type: 'string', short: 'o', value: 'DIR', description: 'output folder (default ./torch-cka-demo)' },
    quiet: { type: 'boolean', short: 'q', description: 'print nothing but errors' },
  },
};

const COMMANDS = [COMPARE, LAYERS, PLOT, DEMO, LAUNCH];

const MAIN_HELP = `Usage: torch-cka <command> [options]

Compares neural networks layer by layer with Centered Kernel Alignment (CKA).

Commands:
${table(
  COMMANDS.map((c) => [`  ${c.usage.replace(/^torch-cka /, '')}`, '']),
  [],
)}

Run torch-cka <command> --help for a command's options. torch-cka --version prints the version.
`;

function dataOptions(values: Values): OpenDatasetOptions {
  const options: OpenDatasetOptions = {};
  const batchSize = integerValue(values, 'batch-size', 1);
  const limit = integerValue(values, 'limit', 1);
  const seed = integerValue(values, 'seed', 0);
  const resize = sizeValue(values, 'resize');
  const centerCrop = sizeValue(values, 'center-crop');
  const normalize = choiceValue(values, 'normalize', ['none', 'imagenet', 'cifar10', 'mnist'] as const);
  const channels = choiceValue(values, 'channels', ['1', '3'] as const);
  const split = choiceValue(values, 'split', ['train', 'test', 'all'] as const);
  if (seed !== undefined && !values.shuffle) throw usageError('--seed needs --shuffle');
  if (batchSize !== undefined) options.batchSize = batchSize;
  if (limit !== undefined) options.limit = limit;
  if (values.shuffle) options.shuffle = true;
  if (seed !== undefined) options.seed = seed;
  if (values['drop-last']) options.dropLast = true;
  if (resize !== undefined) options.resize = resize;
  if (centerCrop !== undefined) options.centerCrop = centerCrop;
  if (normalize !== undefined) options.normalize = normalize;
  if (channels !== undefined) options.channels = Number(channels) as 1 | 3;
  if (split !== undefined) options.split = split;
  return options;
}

function checkpointEvery(values: Values): number | undefined {
  const every = integerValue(values, 'checkpoint-every', 1);
  if (every !== undefined && values.checkpoint === undefined)
    throw usageError('--checkpoint-every needs --checkpoint FILE');
  return every;
}

const optionalList = (value: string | undefined): string[] | undefined => (value === undefined ? undefined : [value]);

async function compareCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, COMPARE);
  if (values.help) return void process.stdout.write(helpText(COMPARE));
  const data1 = stringValue(values, 'data');
  if (data1 === undefined) throw usageError(`torch-cka compare needs --data PATH; usage: ${COMPARE.usage}`);
  const pick = <T>(value: T | undefined, key: string): Record<string, T> =>
    value === undefined ? {} : { [key]: value };
  await runCompare({
    model1: positionals[0] as string,
    model2: positionals[1] as string,
    data1,
    ...pick(stringValue(values, 'data2'), 'data2'),
    ...pick(listValue(values, 'layers1'), 'layers1'),
    ...pick(listValue(values, 'layers2'), 'layers2'),
    ...pick(stringValue(values, 'name1'), 'name1'),
    ...pick(stringValue(values, 'name2'), 'name2'),
    ...pick(stringValue(values, 'device'), 'device'),
    ...pick(integerValue(values, 'threads', 1), 'threads'),
    ...(values.sequential ? { concurrent: false } : {}),
    ...(values['skip-non-finite'] ? { skipNonFinite: true } : {}),
    ...pick(stringValue(values, 'checkpoint'), 'checkpoint'),
    ...pick(checkpointEvery(values), 'checkpointEvery'),
    ...pick(integerValue(values, 'dist-timeout', 1), 'distTimeout'),
    data: dataOptions(values),
    ...pick(stringValue(values, 'out'), 'out'),
    ...pick(stringValue(values, 'csv'), 'csv'),
    ...pick(optionalList(stringValue(values, 'plot')), 'plots'),
    ...pick(stringValue(values, 'report'), 'report'),
    ...pick(stringValue(values, 'title'), 'title'),
    quiet: Boolean(values.quiet),
    ...(values.verbose ? { verbose: true } : {}),
    argv: ['compare', ...argv],
  });
}

async function layersCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, LAYERS);
  if (values.help) return void process.stdout.write(helpText(LAYERS));
  const model = await loadModel(positionals[0] as string, { device: stringValue(values, 'device') ?? 'cpu' });
  try {
    const layers = model.layers();
    if (values.json) {
      process.stdout.write(`${JSON.stringify(layers, null, 2)}\n`);
      return;
    }
    process.stdout.write(`${model.name}: ${layers.length} named submodules (${model.path})\n\n`);
    process.stdout.write(`${table([['name', 'type'], ...layers.map((l) => [l.name, l.type])])}\n`);
  } finally {
    model.dispose();
  }
}

async function plotCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, PLOT);
  if (values.help) return void process.stdout.write(helpText(PLOT));
  const out = stringValue(values, 'out');
  if (out === undefined) throw usageError(`torch-cka plot needs --out FILE; usage: ${PLOT.usage}`);
  const title = stringValue(values, 'title');
  const file = positionals[0] as string;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw validateResultError(file, `it cannot be read (${(error as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw validateResultError(file, `it is not JSON (${(error as Error).message})`);
  }
  const result = validateResult(parsed, file);
  if (path.extname(out).toLowerCase() === '.html') {
    const cli = (parsed as { cli?: { version?: string; date?: string; argv?: string[] } }).cli;
    const html = reportHtml(result, {
      ...(title ? { title } : {}),
      ...(cli?.date ? { generatedAt: cli.date } : {}),
      ...(cli?.version ? { version: cli.version } : {}),
      ...(Array.isArray(cli?.argv) ? { command: ['torch-cka', ...cli.argv].join(' ') } : {}),
    });
    await writeFileAtomic(out, html);
  } else {
    if (!['.svg', '.png'].includes(path.extname(out).toLowerCase())) {
      throw usageError(`Expected --out to end in .svg, .png or .html but received '${out}'`);
    }
    await writePlot(out, result, title);
  }
  process.stdout.write(`wrote ${out}\n`);
}

const validateResultError = (file: string, why: string): Error =>
  makeError(TypeError, ErrorCodes.INVALID_RESULT, `${file} is not a torch-cka results file: ${why}`);

async function demoCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, DEMO);
  if (values.help) return void process.stdout.write(helpText(DEMO));
  await runDemo({ out: stringValue(values, 'out') ?? 'torch-cka-demo', quiet: Boolean(values.quiet) });
}

/** A handler resolves to the exit code, or to nothing for 0. */
const HANDLERS: Record<string, (argv: string[]) => Promise<number | void>> = {
  compare: compareCommand,
  layers: layersCommand,
  plot: plotCommand,
  demo: demoCommand,
  launch: (argv) => runLaunch(argv),
};

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === undefined || command === '--help' || command === '-h') {
      process.stdout.write(MAIN_HELP);
      return command === undefined ? 2 : 0;
    }
    if (command === '--version' || command === '-v') {
      process.stdout.write(`${packageVersion()}\n`);
      return 0;
    }
    if (command === 'help') {
      const spec = COMMANDS.find((c) => c.name === rest[0]);
      process.stdout.write(spec ? helpText(spec) : MAIN_HELP);
      return 0;
    }
    const handler = HANDLERS[command];
    if (handler === undefined) {
      throw usageError(`Unknown command '${command}'; the commands are ${Object.keys(HANDLERS).join(', ')}`);
    }
    return (await handler(rest)) ?? 0;
  } catch (error) {
    const { code, message, name } = error as { code?: string; message?: string; name?: string };
    const line = (message ?? String(error)).replace(/\s*\n\s*/g, ' ').trim();
    process.stderr.write(`torch-cka: ${line}${code ? ` [${code}]` : ''}\n`);
    if (name === 'AbortError') return 130;
    return code === 'ERR_USAGE' ? 2 : 1;
  }
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
