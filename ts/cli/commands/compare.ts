// `torch-cka compare`: two models, one or two data sets, and the files asked
// for. Its options and help, how they map to a CompareConfig, and the run
// (runCompare), which `torch-cka demo` calls on the shipped models.
import path from 'node:path';

import { CKA } from '../../compare/cka';
import { MEASURE_NAMES, measureFiles, resultMeasures } from '../../compare/measures';
import type { FullBatchStats } from '../../compare/full-batch';
import type { CKAResult, CKAWarning, FullBatchOptions, Measure } from '../../compare/types';
import { parseView, type View } from '../../compare/views';
import { type Dataset, type OpenDatasetOptions, openDataset } from '../../data';
import { type DistributedInfo, distributedEnv } from '../../compare/distributed';
import { layerMatcher, unmatchedLayerKey } from '../../model/layer-patterns';
import { loadModel, type Model } from '../../model/model';
import { bestMatches, reportHtml } from '../../report';
import { defaultTitle } from '../../plot';
import { formatDuration, Progress } from '../progress';
import { resultToCsv, table, writeFileAtomic } from '../output';
import {
  type CommandSpec,
  byteSizeValue,
  choiceValue,
  helpText,
  integerValue,
  listValue,
  numberValue,
  pairsValue,
  parse,
  sizeValue,
  stringValue,
  usageError,
  type Values,
} from '../args';
import type { Command } from '../command';
import { plotKind, writePlot } from './plot';
import { packageVersion } from '../version';

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
  inputs: {
    type: 'string',
    value: 'a,b',
    description: ".npz: the arrays fed to the model, in its inputs' order (default: all, archive order)",
  },
};

export const COMPARE: CommandSpec = {
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
    view: {
      type: 'string',
      value: 'PAT=VIEW',
      multiple: true,
      description: 'feature view of the matching layers of both models (repeatable; see below)',
    },
    view1: { type: 'string', value: 'PAT=VIEW', multiple: true, description: "model 1's feature views (repeatable)" },
    view2: { type: 'string', value: 'PAT=VIEW', multiple: true, description: "model 2's feature views (repeatable)" },
    name1: { type: 'string', value: 'N', description: "model 1's name (default: its file's base name)" },
    name2: { type: 'string', value: 'N', description: "model 2's name" },
    device: { type: 'string', value: 'DEV', description: 'cpu (default), cuda or cuda:N' },
    threads: { type: 'string', value: 'N', description: 'threads per batch (default on the CPU: 1)' },
    workers: {
      type: 'string',
      value: 'N',
      description: 'batches computed at once (default on the CPU: the usable cores / threads; GPU: 2)',
    },
    sequential: { type: 'boolean', description: 'run the two models of a batch in turn, not at once' },
    'skip-non-finite': { type: 'boolean', description: 'skip a batch with NaN/Inf in a layer (default: stop)' },
    checkpoint: {
      type: 'string',
      value: 'FILE',
      description: 'save progress to FILE as the run goes; resume from it if it exists',
    },
    'checkpoint-every': { type: 'string', value: 'N', description: 'batches between checkpoint writes (default 10)' },
    measures: {
      type: 'string',
      value: 'a,b',
      description:
        'cka (default), rbf_cka, dcor; with --full-batch also linear_cka_biased, rbf_cka_biased,\n' +
        'cca_rho, cca_r2, svcca, procrustes, rsa, mknn (docs/measures.md, docs/full-batch.md)',
    },
    'full-batch': {
      type: 'string',
      value: 'N',
      description: 'every measure on one set: the first N samples (after --shuffle, --limit)',
    },
    'svcca-variance': {
      type: 'string',
      value: 'F',
      description: "svcca: keep the directions explaining F of a layer's variance, in (0, 1] (default 0.99)",
    },
    'mknn-k': { type: 'string', value: 'K', description: 'mknn: neighbours per sample, 1 <= K < N (default 10)' },
    'cca-ridge': {
      type: 'string',
      value: 'E',
      description: 'cca_rho, cca_r2, svcca: ridge CCA with epsilon E >= 0 (default 0: plain CCA)',
    },
    'memory-budget': {
      type: 'string',
      value: 'SIZE',
      description: 'full batch: bytes it may hold, or 512M, 8G, ... (default: 3/4 of free memory)',
    },
    'rbf-threshold': { type: 'string', value: 'X', description: 'rbf_cka: sigma = X x sqrt(median d²) (default 0.5)' },
    sigma: {
      type: 'string',
      value: 'P=S,..',
      multiple: true,
      description: 'rbf_cka: fixed sigma S for layers matching P, both models (repeatable)',
    },
    sigma1: {
      type: 'string',
      value: 'P=S,..',
      multiple: true,
      description: "rbf_cka: fixed sigma for model 1's layers (repeatable)",
    },
    sigma2: {
      type: 'string',
      value: 'P=S,..',
      multiple: true,
      description: "rbf_cka: fixed sigma for model 2's layers (repeatable)",
    },
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
    'Data: a .npy array (N x ...), an .npz archive (one array per model input; --inputs),\n' +
    'CIFAR-10 binary batches (a .bin file or their folder),\n' +
    'an MNIST-style IDX image file (gzipped or not), or a folder of JPEG/PNG/WebP images.\n' +
    'Layer patterns: * matches within one dotted segment, ** across them, ? one character.\n' +
    'Views: flatten (default), spatial-mean (N,C,... -> mean over the positions), token-mean\n' +
    '(N,T,D -> mean over the tokens), token:K (token K, negative from the end); the first\n' +
    "matching --view1/--view2 wins, then --view, e.g. --view1 'blocks.*=token:0'.\n" +
    'With several --measures, --csv and --plot write one file per measure: the first gets\n' +
    'FILE, the others FILE with .ID before the extension (heatmap.rbf_cka.svg).\n' +
    '--full-batch N computes the measures on the N x N Grams of one evaluation set (N may\n' +
    'exceed --batch-size); it needs no checkpoint and runs in one process (docs/full-batch.md).\n' +
    'Under torch-cka launch or torchrun (WORLD_SIZE > 1) the batches are shared among the\n' +
    'processes; rank 0 prints the progress and writes the files. See torch-cka launch --help.',
};

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
  const inputs = listValue(values, 'inputs');
  if (inputs !== undefined) {
    const names = inputs.map((name) => name.replace(/\.npy$/, ''));
    const twice = names.find((name, i) => names.indexOf(name) !== i);
    if (twice !== undefined) throw usageError(`--inputs names ${twice} twice`);
    options.inputs = inputs;
  }
  return options;
}

function checkpointEvery(values: Values): number | undefined {
  const every = integerValue(values, 'checkpoint-every', 1);
  if (every !== undefined && values.checkpoint === undefined)
    throw usageError('--checkpoint-every needs --checkpoint FILE');
  return every;
}

const VIEW_EXPECTED = 'VIEW (flatten, spatial-mean, token-mean or token:K)';

/** `--view1`, `--view2` or `--view` (both models): { pattern: view }, a repeated pattern keeping its first view. */
function viewOption(values: Values, name: 'view' | 'view1' | 'view2'): Record<string, View> | undefined {
  const pairs = pairsValue(values, name, parseView, VIEW_EXPECTED);
  if (pairs.length === 0) return undefined;
  const out: Record<string, View> = {};
  for (const [pattern, view] of pairs) if (!(pattern in out)) out[pattern] = view;
  return out;
}

/**
 * One model's entries of a per-layer option (views, σ): its own (--view1,
 * --sigma1, ...) first, since the first match wins, then those of the option
 * for both models (--view, --sigma) that match one of its layers. An entry for
 * both must match a layer of one model at least.
 */
function modelEntries<T>(
  own: Record<string, T> | undefined,
  both: Record<string, T> | undefined,
  flag: string,
  model: Model,
  other: Model,
): Record<string, T> | undefined {
  const out: Record<string, T> = { ...own };
  const names = model.native.layers().map((layer) => layer.name);
  const otherNames = other.native.layers().map((layer) => layer.name);
  for (const [pattern, value] of Object.entries(both ?? {})) {
    const matches = layerMatcher(pattern);
    if (!names.some(matches) && !otherNames.some(matches)) throw unmatchedLayerKey(pattern, flag, 'either model');
    if (names.some(matches) && !(pattern in out)) out[pattern] = value;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** --rbf-threshold: a positive finite number. */
function thresholdValue(values: Values): number | undefined {
  const text = stringValue(values, 'rbf-threshold');
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value <= 0) {
    throw usageError(`Expected a positive number for --rbf-threshold but received '${text}'`);
  }
  return value;
}

/** --full-batch N and its settings; the settings alone need --full-batch. */
function fullBatchValue(values: Values): FullBatchOptions | undefined {
  const samples = integerValue(values, 'full-batch', 4);
  const svccaVariance = numberValue(values, 'svcca-variance', { min: 0, max: 1, open: true }, 'a fraction in (0, 1]');
  const mknnK = integerValue(values, 'mknn-k', 1);
  const ccaRidge = numberValue(values, 'cca-ridge', { min: 0 }, 'a number >= 0');
  const memoryBudget = byteSizeValue(values, 'memory-budget');
  if (samples === undefined) {
    const flag = (
      [
        ['svcca-variance', svccaVariance],
        ['mknn-k', mknnK],
        ['cca-ridge', ccaRidge],
        ['memory-budget', memoryBudget],
      ] as const
    ).find(([, value]) => value !== undefined)?.[0];
    if (flag !== undefined) throw usageError(`--${flag} is a setting of the full-batch mode: it needs --full-batch N`);
    return undefined;
  }
  if (mknnK !== undefined && mknnK >= samples) {
    throw usageError(`Expected --mknn-k to be less than --full-batch ${samples} but received '${mknnK}'`);
  }
  if (values.checkpoint !== undefined) {
    throw usageError('--full-batch needs no --checkpoint: its one evaluation set runs in one call; leave one out');
  }
  return {
    samples,
    ...(svccaVariance !== undefined ? { svccaVariance } : {}),
    ...(mknnK !== undefined ? { mknnK } : {}),
    ...(ccaRidge !== undefined ? { ccaRidge } : {}),
    ...(memoryBudget !== undefined ? { memoryBudget } : {}),
  };
}

/** --measures: known ids, each once. */
function measuresValue(values: Values): Measure[] | undefined {
  const ids = listValue(values, 'measures');
  if (ids === undefined) return undefined;
  const known = Object.keys(MEASURE_NAMES);
  for (const id of ids) {
    if (!known.includes(id)) {
      throw usageError(`Expected --measures to list ${known.join(', ')} but received '${id}'`);
    }
  }
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice !== undefined) throw usageError(`--measures names '${twice}' twice`);
  return ids as Measure[];
}

/** --sigma, --sigma1 or --sigma2 (repeatable, comma lists) as { pattern: sigma }; a repeated pattern keeps its first σ. */
function sigmaValue(values: Values, name: 'sigma' | 'sigma1' | 'sigma2'): Record<string, number> | undefined {
  const out: Record<string, number> = {};
  // Repeatable, and each occurrence may list several: --sigma1 a=1,b=2 --sigma1 c=3.
  const raw = values[name];
  const texts = raw === undefined || typeof raw === 'boolean' ? [] : Array.isArray(raw) ? raw : [raw];
  const entries = texts.flatMap((text) => listValue({ [name]: text }, name) ?? []);
  for (const entry of entries) {
    const eq = entry.lastIndexOf('=');
    const pattern = eq > 0 ? entry.slice(0, eq).trim() : '';
    const sigma = eq > 0 ? Number(entry.slice(eq + 1)) : Number.NaN;
    if (!pattern || entry.slice(eq + 1).trim() === '' || !Number.isFinite(sigma) || sigma <= 0) {
      throw usageError(`Expected --${name} PATTERN=SIGMA with a positive SIGMA but received '${entry}'`);
    }
    if (!(pattern in out)) out[pattern] = sigma;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

const optionalList = (value: string | undefined): string[] | undefined => (value === undefined ? undefined : [value]);

/** `torch-cka compare ARGS`: parses the arguments into a CompareConfig and runs it. */
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
    ...pick(viewOption(values, 'view1'), 'views1'),
    ...pick(viewOption(values, 'view2'), 'views2'),
    ...pick(viewOption(values, 'view'), 'views'),
    ...pick(stringValue(values, 'name1'), 'name1'),
    ...pick(stringValue(values, 'name2'), 'name2'),
    ...pick(stringValue(values, 'device'), 'device'),
    ...pick(integerValue(values, 'threads', 1), 'threads'),
    ...pick(integerValue(values, 'workers', 1), 'workers'),
    ...(values.sequential ? { concurrent: false } : {}),
    ...(values['skip-non-finite'] ? { skipNonFinite: true } : {}),
    ...pick(stringValue(values, 'checkpoint'), 'checkpoint'),
    ...pick(checkpointEvery(values), 'checkpointEvery'),
    ...pick(integerValue(values, 'dist-timeout', 1), 'distTimeout'),
    ...pick(measuresValue(values), 'measures'),
    ...pick(fullBatchValue(values), 'fullBatch'),
    ...pick(thresholdValue(values), 'rbfThreshold'),
    ...pick(sigmaValue(values, 'sigma1'), 'sigmas1'),
    ...pick(sigmaValue(values, 'sigma2'), 'sigmas2'),
    ...pick(sigmaValue(values, 'sigma'), 'sigmas'),
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

export const compare: Command = { spec: COMPARE, run: compareCommand };

export interface CompareConfig {
  model1: string;
  model2: string;
  data1: string;
  data2?: string;
  layers1?: string[];
  layers2?: string[];
  /** Model 1's feature views by layer pattern; see CKAOptions.model1Views. */
  views1?: Record<string, View>;
  /** Model 2's feature views; see CKAOptions.model2Views. */
  views2?: Record<string, View>;
  /** Views for both models (`--view`): each model takes the entries that match its layers, after its own. */
  views?: Record<string, View>;
  name1?: string;
  name2?: string;
  device?: string;
  /** Threads per batch; see CKAOptions.threads. */
  threads?: number;
  /** Batches at once; see CKAOptions.workers. */
  workers?: number;
  /** False runs the models in turn; see CKAOptions.concurrent. */
  concurrent?: boolean;
  /** See CKAOptions.skipNonFinite. */
  skipNonFinite?: boolean;
  /** Checkpoint file: saved as the run goes, resumed from when it exists. */
  checkpoint?: string;
  /** Batches between checkpoint writes. */
  checkpointEvery?: number;
  /** Seconds to wait for a rank that has not arrived or fell silent (distributed runs). */
  distTimeout?: number;
  /** See CKAOptions.measures. */
  measures?: Measure[];
  /** See CKAOptions.rbfThreshold. */
  rbfThreshold?: number;
  /** The full-batch mode (`--full-batch N` and its settings); see CKAOptions.fullBatch. */
  fullBatch?: FullBatchOptions;
  /** See CKAOptions.model1Sigmas and model2Sigmas. */
  sigmas1?: Record<string, number>;
  sigmas2?: Record<string, number>;
  /** σ for both models (`--sigma`): each model takes the entries that match its layers, after its own. */
  sigmas?: Record<string, number>;
  data: OpenDatasetOptions;
  out?: string;
  csv?: string;
  /** Heatmaps to write, .svg or .png each. */
  plots?: string[];
  report?: string;
  title?: string;
  quiet: boolean;
  /** Lists each left-out layer (TORCH_CKA_LAYER_LEFT_OUT) with its reason, one a line. */
  verbose?: boolean;
  /** The command line, recorded in results.json and the report. */
  argv: string[];
}

/** The results.json object: export() plus how it was made. */
export interface CliResults extends CKAResult {
  cli: {
    version: string;
    argv: string[];
    device: string;
    data1: string;
    data2: string | null;
    date: string;
    elapsedSeconds: number;
    /** Threads per model, and whether the models ran at once. */
    threads: number;
    concurrent: boolean;
    /** Present when the run was shared among processes. */
    distributed?: { worldSize: number; backend: string };
    /** The full-batch mode: what the engine did (CKA.fullBatchStats()). */
    fullBatch?: FullBatchStats;
  };
}

export interface CompareOutcome {
  results: CliResults;
  written: string[];
}

/**
 * Under `torch-cka launch` or torchrun (WORLD_SIZE above 1), compare shares
 * the batches among the processes; rank 0 alone prints and writes files.
 */
function distributedSetting(config: CompareConfig): DistributedInfo | null {
  const fromEnv = distributedEnv();
  if (fromEnv === null || fromEnv.worldSize < 2) return null;
  return config.distTimeout === undefined ? fromEnv : { ...fromEnv, timeout: Math.ceil(config.distTimeout * 1000) };
}

export async function runCompare(config: CompareConfig): Promise<CompareOutcome> {
  for (const file of config.plots ?? []) plotKind(file);
  const dist = distributedSetting(config);
  if (dist && config.fullBatch) {
    throw usageError(
      `--full-batch runs in one process, but this is rank ${dist.rank} of ${dist.worldSize} (torch-cka launch, torchrun); run it without launch`,
    );
  }
  // Ranks other than 0 print nothing but errors.
  const quiet = config.quiet || (dist !== null && dist.rank !== 0);
  const stderr = process.stderr;
  const say = (line: string): void => {
    if (!quiet) process.stdout.write(`${line}\n`);
  };
  const onWarning = (warning: CKAWarning): void => {
    if (quiet) return;
    const layers = warning.code === 'TORCH_CKA_LAYER_LEFT_OUT' ? (warning.layers ?? []) : [];
    if (layers.length === 0) return void stderr.write(`warning: ${warning.message} (${warning.code})\n`);
    if (!config.verbose) {
      return void stderr.write(`warning: ${warning.message} (${warning.code}; --verbose lists them)\n`);
    }
    const lines = layers.map((layer) => `  ${layer.name}: ${layer.reason}\n`);
    stderr.write(`warning: ${warning.message} (${warning.code})\n${lines.join('')}`);
  };

  // Data first: a wrong path fails before the models load.
  const data1 = await openDataset(config.data1, config.data);
  const data2 = config.data2 === undefined ? undefined : await openDataset(config.data2, config.data);
  if (config.data.inputs !== undefined && data1.format !== 'npz' && data2?.format !== 'npz') {
    throw usageError(`--inputs chooses arrays of an .npz archive, but ${config.data1} is ${data1.format} data`);
  }
  // Each rank on a host takes its own GPU.
  let device = config.device ?? 'cpu';
  if (dist && device === 'cuda') device = `cuda:${dist.localRank}`;
  const models: Model[] = [];
  try {
    const model1 = await loadModel(config.model1, { device, ...(config.name1 ? { name: config.name1 } : {}) });
    models.push(model1);
    const model2 = await loadModel(config.model2, { device, ...(config.name2 ? { name: config.name2 } : {}) });
    models.push(model2);
    const views1 = modelEntries(config.views1, config.views, '--view', model1, model2);
    const views2 = modelEntries(config.views2, config.views, '--view', model2, model1);
    const sigmas1 = modelEntries(config.sigmas1, config.sigmas, '--sigma', model1, model2);
    const sigmas2 = modelEntries(config.sigmas2, config.sigmas, '--sigma', model2, model1);
    const cka = new CKA(model1, model2, {
      ...(config.layers1 ? { model1Layers: config.layers1 } : {}),
      ...(config.layers2 ? { model2Layers: config.layers2 } : {}),
      ...(views1 ? { model1Views: views1 } : {}),
      ...(views2 ? { model2Views: views2 } : {}),
      dataset1Name: data1.name,
      ...(data2 ? { dataset2Name: data2.name } : {}),
      ...(config.threads ? { threads: config.threads } : {}),
      ...(config.workers ? { workers: config.workers } : {}),
      ...(config.concurrent === false ? { concurrent: false } : {}),
      ...(config.skipNonFinite ? { skipNonFinite: true } : {}),
      ...(config.measures ? { measures: config.measures } : {}),
      ...(config.rbfThreshold ? { rbfThreshold: config.rbfThreshold } : {}),
      ...(config.fullBatch ? { fullBatch: config.fullBatch } : {}),
      ...(sigmas1 ? { model1Sigmas: sigmas1 } : {}),
      ...(sigmas2 ? { model2Sigmas: sigmas2 } : {}),
      onWarning,
    });
    say(`${describeModel(model1)}\n${describeModel(model2)}`);
    say(`data: ${data1.describe()}${data2 ? `\ndata2: ${data2.describe()}` : ''}`);

    const total = data2 ? Math.min(data1.batchCount, data2.batchCount) : data1.batchCount;
    const progress = new Progress(stderr, config.fullBatch ? { quiet } : { total, quiet });
    if (config.fullBatch) say(`full batch: the first ${config.fullBatch.samples} samples as one evaluation set`);
    if (dist) say(`distributed: rank 0 of ${dist.worldSize}, store at ${dist.masterAddr}:${dist.masterPort}`);
    const controller = new AbortController();
    const onSignal = (): void => controller.abort(new Error('interrupted'));
    process.once('SIGINT', onSignal);
    const started = performance.now();
    let backend = 'gloo';
    const checkpoint = config.checkpoint
      ? {
          path: config.checkpoint,
          ...(config.checkpointEvery ? { every: config.checkpointEvery } : {}),
          // The readers' options change the samples: a resumed run must use the same.
          key: JSON.stringify({ data1: config.data1, data2: config.data2 ?? null, options: config.data }),
        }
      : undefined;
    try {
      const outcome = await cka.compare(data1, data2, {
        signal: controller.signal,
        ...(checkpoint ? { checkpoint } : {}),
        ...(dist ? { distributed: dist } : {}),
        onProgress: ({ position, batches, skipped, samples, distributed, fullBatch }) => {
          if (fullBatch) return void progress.phase(fullBatch.phase, fullBatch.done, fullBatch.total);
          if (distributed) {
            // Rank 0 shows the whole job: the sum of every rank's heartbeat.
            if (distributed.job)
              progress.update(distributed.job.batches + distributed.job.skipped, distributed.job.samples);
            return;
          }
          progress.resumeAt(position - batches - skipped);
          progress.update(position, samples);
        },
      });
      if (outcome.resumed > 0) say(`resumed from ${config.checkpoint}: ${outcome.resumed} batches restored`);
      if (outcome.distributed) {
        backend = outcome.distributed.backend;
        const t = outcome.distributed.timings;
        say(
          `distributed: ${outcome.distributed.worldSize} ranks (${outcome.distributed.backend}); rank 0 compared ` +
            `${outcome.distributed.local.batches} batches, waited ${(t.wait / 1000).toFixed(1)} s for the others; ` +
            `all-reduce ${t.allreduce.toFixed(1)} ms`,
        );
      }
    } finally {
      process.off('SIGINT', onSignal);
      progress.done();
    }
    const elapsedSeconds = (performance.now() - started) / 1000;
    const result = cka.export();
    const stats = cka.stats();
    const results: CliResults = {
      ...result,
      cli: {
        version: packageVersion(),
        argv: config.argv,
        device,
        data1: data1.path,
        data2: data2?.path ?? null,
        date: new Date().toISOString(),
        elapsedSeconds: Math.round(elapsedSeconds * 1000) / 1000,
        threads: stats.threads,
        concurrent: stats.concurrent,
        ...(dist ? { distributed: { worldSize: dist.worldSize, backend: backend } } : {}),
        ...(config.fullBatch ? { fullBatch: cka.fullBatchStats() } : {}),
      },
    };
    // Every rank holds the whole matrix; rank 0 alone writes it.
    if (dist && dist.rank !== 0) return { results, written: [] };

    const written: string[] = [];
    if (config.out) {
      await writeFileAtomic(config.out, `${JSON.stringify(results, null, 2)}\n`);
      written.push(config.out);
    }
    // One CSV and one heatmap per measure (the first measure's in the file named).
    const matrices = resultMeasures(result);
    const ids = Object.keys(matrices);
    const only = (id: string): CKAResult => ({ ...result, cka: matrices[id] ?? [] });
    if (config.csv) {
      for (const [id, file] of measureFiles(config.csv, ids)) {
        await writeFileAtomic(file, resultToCsv(only(id)));
        written.push(file);
      }
    }
    for (const plot of config.plots ?? []) {
      for (const [id, file] of measureFiles(plot, ids)) {
        const title =
          ids.length > 1 || id !== 'cka'
            ? `${config.title ?? defaultTitle(result)}: ${MEASURE_NAMES[id] ?? id}`
            : config.title;
        await writePlot(file, only(id), title);
        written.push(file);
      }
    }
    if (config.report) {
      const html = reportHtml(result, {
        ...(config.title ? { title: config.title } : {}),
        model1: { path: model1.path, device: model1.device, layerCount: result.model1Layers.length },
        model2: { path: model2.path, device: model2.device, layerCount: result.model2Layers.length },
        dataset1: { path: data1.path, description: data1.describe() },
        ...(data2 ? { dataset2: { path: data2.path, description: data2.describe() } } : {}),
        generatedAt: results.cli.date,
        version: results.cli.version,
        command: ['torch-cka', ...config.argv].join(' '),
        elapsedSeconds,
      });
      await writeFileAtomic(config.report, html);
      written.push(config.report);
    }

    say('');
    say(summary(result, elapsedSeconds));
    if (written.length > 0) say(`\nwrote ${written.join(', ')}`);
    else say('\n(nothing saved: add --out, --csv, --plot or --report)');
    return { results, written };
  } finally {
    for (const model of models) model.dispose();
  }
}

const describeModel = (model: Model): string =>
  `model: ${model.name} (${model.path}, ${model.layers().length} submodules, ${model.device})`;

/** The best match in model 2 for each layer of model 1, as a text table. */
export function summary(result: CKAResult, elapsedSeconds: number): string {
  const rows = result.model1Layers.length;
  const cols = result.model2Layers.length;
  const ids = Object.keys(resultMeasures(result));
  const what = ids.length === 1 && ids[0] === 'cka' ? 'CKA' : ids.join(', ');
  const over =
    result.fullBatch !== undefined
      ? `on one full-batch set of ${result.samples} samples`
      : `over ${result.samples} samples in ${result.batches} batches`;
  const head =
    `${what} of ${rows} x ${cols} layers ${over} ` +
    `(${formatDuration(elapsedSeconds)}, ${(result.samples / Math.max(elapsedSeconds, 1e-9)).toFixed(0)} samples/s)`;
  const parts = [head];
  // One best-match table per measure, each named.
  for (const [id, matrix] of Object.entries(resultMeasures(result))) {
    const matches = bestMatches({ ...result, cka: matrix });
    const shown = rows <= 40 ? matches : [...matches.slice(0, 20), null, ...matches.slice(-10)];
    const label = id === 'cka' ? 'CKA' : id;
    const lines: string[][] = [[`${result.model1Name} layer`, `best match in ${result.model2Name}`, label]];
    for (const match of shown) {
      if (match === null) lines.push([`... ${rows - 30} more`, '', '']);
      else lines.push([match.layer1, match.layer2 ?? '-', match.cka === null ? '-' : match.cka.toFixed(3)]);
    }
    const named = Object.keys(resultMeasures(result)).length > 1 || id !== 'cka';
    parts.push(`${named ? `${MEASURE_NAMES[id] ?? id} (${id}):\n` : ''}${table(lines, [2])}`);
  }
  return parts.join('\n\n');
}
