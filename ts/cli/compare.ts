// `torch-cka compare`: two models, one or two data sets, and the files asked
// for. `torch-cka demo` runs the same code on the shipped models.
import path from 'node:path';

import { CKA, type CKAResult, type CkaWarning } from '../compare/cka';
import { type Dataset, type OpenDatasetOptions, openDataset } from '../data';
import { type DistributedInfo, distributedEnv } from '../compare/distributed';
import { loadModel, type Model } from '../model/model';
import { heatmapPng, heatmapSvg } from '../plot';
import { bestMatches, reportHtml } from '../report';
import { formatDuration, Progress } from './progress';
import { resultToCsv, table, writeFileAtomic } from './output';
import { usageError } from './args';
import { packageVersion } from './version';

export interface CompareConfig {
  model1: string;
  model2: string;
  data1: string;
  data2?: string;
  layers1?: string[];
  layers2?: string[];
  name1?: string;
  name2?: string;
  device?: string;
  /** Threads per model; see CKAOptions.threads. */
  threads?: number;
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
  };
}

export interface CompareOutcome {
  results: CliResults;
  written: string[];
}

const plotKind = (file: string): 'svg' | 'png' => {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.svg') return 'svg';
  if (ext === '.png') return 'png';
  throw usageError(`Expected --plot to end in .svg or .png but received '${file}'`);
};

/** Writes a heatmap, choosing SVG or PNG from the file's extension. */
export async function writePlot(file: string, result: CKAResult, title: string | undefined): Promise<void> {
  const options = title === undefined ? {} : { title };
  const kind = plotKind(file);
  await writeFileAtomic(file, kind === 'svg' ? heatmapSvg(result, options) : heatmapPng(result, options));
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
  // Ranks other than 0 print nothing but errors.
  const quiet = config.quiet || (dist !== null && dist.rank !== 0);
  const stderr = process.stderr;
  const say = (line: string): void => {
    if (!quiet) process.stdout.write(`${line}\n`);
  };
  const onWarning = (warning: CkaWarning): void => {
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
  // Each rank on a host takes its own GPU.
  let device = config.device ?? 'cpu';
  if (dist && device === 'cuda') device = `cuda:${dist.localRank}`;
  const models: Model[] = [];
  try {
    const model1 = await loadModel(config.model1, { device, ...(config.name1 ? { name: config.name1 } : {}) });
    models.push(model1);
    const model2 = await loadModel(config.model2, { device, ...(config.name2 ? { name: config.name2 } : {}) });
    models.push(model2);
    const cka = new CKA(model1, model2, {
      ...(config.layers1 ? { model1Layers: config.layers1 } : {}),
      ...(config.layers2 ? { model2Layers: config.layers2 } : {}),
      dataset1Name: data1.name,
      ...(data2 ? { dataset2Name: data2.name } : {}),
      ...(config.threads ? { threads: config.threads } : {}),
      ...(config.concurrent === false ? { concurrent: false } : {}),
      ...(config.skipNonFinite ? { skipNonFinite: true } : {}),
      onWarning,
    });
    say(`${describeModel(model1)}\n${describeModel(model2)}`);
    say(`data: ${data1.describe()}${data2 ? `\ndata2: ${data2.describe()}` : ''}`);

    const total = data2 ? Math.min(data1.batchCount, data2.batchCount) : data1.batchCount;
    const progress = new Progress(stderr, { total, quiet });
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
        onProgress: ({ position, batches, skipped, samples, distributed }) => {
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
      },
    };
    // Every rank holds the whole matrix; rank 0 alone writes it.
    if (dist && dist.rank !== 0) return { results, written: [] };

    const written: string[] = [];
    if (config.out) {
      await writeFileAtomic(config.out, `${JSON.stringify(results, null, 2)}\n`);
      written.push(config.out);
    }
    if (config.csv) {
      await writeFileAtomic(config.csv, resultToCsv(result));
      written.push(config.csv);
    }
    for (const file of config.plots ?? []) {
      await writePlot(file, result, config.title);
      written.push(file);
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
  const head =
    `CKA of ${rows} x ${cols} layers over ${result.samples} samples in ${result.batches} batches ` +
    `(${formatDuration(elapsedSeconds)}, ${(result.samples / Math.max(elapsedSeconds, 1e-9)).toFixed(0)} samples/s)`;
  const matches = bestMatches(result);
  const shown = rows <= 40 ? matches : [...matches.slice(0, 20), null, ...matches.slice(-10)];
  const lines: string[][] = [[`${result.model1Name} layer`, `best match in ${result.model2Name}`, 'CKA']];
  for (const match of shown) {
    if (match === null) lines.push([`... ${rows - 30} more`, '', '']);
    else lines.push([match.layer1, match.layer2 ?? '-', match.cka === null ? '-' : match.cka.toFixed(3)]);
  }
  return `${head}\n\n${table(lines, [2])}`;
}
