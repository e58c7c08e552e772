// `torch-cka demo`: the shipped CNN and MLP, trained on scikit-learn's digits,
// compared on 360 held-out digits, with every output the CLI can write.
import { existsSync } from 'node:fs';
import path from 'node:path';

import { ErrorCodes, makeError } from '../util/errors';
import { type CompareOutcome, runCompare } from './compare';
import { packageRoot } from './version';

export interface DemoOptions {
  out: string;
  quiet: boolean;
}

/** The demo's files inside the package (made by scripts/make_demo.py). */
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
