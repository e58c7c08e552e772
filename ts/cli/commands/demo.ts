// `torch-cka demo`: the shipped CNN and MLP, trained on scikit-learn's digits,
// compared on 360 held-out digits, with every output the CLI can write.
import { existsSync } from 'node:fs';
import path from 'node:path';

import { ErrorCodes, makeError } from '../../util/errors';
import { type CompareOutcome, runCompare } from './compare';
import { type CommandSpec, helpText, parse, stringValue } from '../args';
import type { Command } from '../command';
import { packageRoot } from '../version';

export const DEMO: CommandSpec = {
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

/** `torch-cka demo [--out DIR]`. */
async function demoCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, DEMO);
  if (values.help) return void process.stdout.write(helpText(DEMO));
  await runDemo({ out: stringValue(values, 'out') ?? 'torch-cka-demo', quiet: Boolean(values.quiet) });
}

export const demo: Command = { spec: DEMO, run: demoCommand };

export interface DemoOptions {
  out: string;
  quiet: boolean;
}

/** The demo's files inside the package (made by demo/make-demo.py). */
export function demoFiles(): { model1: string; model2: string; data: string } {
  const root = path.join(packageRoot(), 'demo');
  const files = {
    model1: path.join(root, 'models', 'cnn.pt'),
    model2: path.join(root, 'models', 'mlp.pt'),
    data: path.join(root, 'data', 'digits.npy'),
  };
  for (const file of Object.values(files)) {
    if (!existsSync(file)) {
      throw makeError(
        Error,
        ErrorCodes.DATA_NOT_FOUND,
        `The demo file ${file} is missing from this installation of torch-cka; reinstall the package`,
      );
    }
  }
  return files;
}

export async function runDemo(options: DemoOptions): Promise<CompareOutcome> {
  const files = demoFiles();
  const out = (name: string): string => path.join(options.out, name);
  if (!options.quiet) {
    process.stdout.write(
      "torch-cka demo: a small CNN and an MLP, both trained on scikit-learn's 8x8 digits,\n" +
        'compared layer by layer on 360 digits neither saw in training.\n\n',
    );
  }
  return runCompare({
    model1: files.model1,
    model2: files.model2,
    data1: files.data,
    name1: 'CNN',
    name2: 'MLP',
    // Leaf layers only: a container's output is its last child's.
    layers1: ['features.*', 'classifier.*'],
    layers2: ['flatten', 'hidden.*', 'head'],
    data: { batchSize: 60 },
    out: out('results.json'),
    csv: out('results.csv'),
    plots: [out('heatmap.svg'), out('heatmap.png')],
    report: out('report.html'),
    title: 'CNN vs MLP on 360 held-out digits',
    quiet: options.quiet,
    argv: ['demo', '--out', options.out],
  });
}
