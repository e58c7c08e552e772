// `torch-cka plot`: the heatmap (.svg, .png) or the HTML report of a
// results.json that compare wrote. writePlot() also serves compare --plot.
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import type { CKAResult } from '../../compare/types';
import { heatmapPng, heatmapSvg, validateResult } from '../../plot';
import { reportHtml, type ReportResult } from '../../report';
import { ErrorCodes, makeError } from '../../util/errors';
import { type CommandSpec, helpText, parse, stringValue, usageError } from '../args';
import type { Command } from '../command';
import { writeFileAtomic } from '../output';

export const PLOT: CommandSpec = {
  name: 'plot',
  usage: 'torch-cka plot results.json --out heatmap.png [--title T]',
  summary: 'Draws the heatmap (.svg or .png) or the HTML report (.html) of a results.json from compare.',
  positionals: { min: 1, max: 1 },
  options: {
    out: { type: 'string', short: 'o', value: 'FILE', description: 'the picture to write: .svg, .png or .html' },
    title: { type: 'string', value: 'T', description: 'title (default: the model names)' },
    measure: {
      type: 'string',
      value: 'ID',
      description:
        'the measure to draw (cka, rbf_cka, svcca, ...) of a file with several (default: cka, else the first)',
    },
  },
};

export const plotKind = (file: string): 'svg' | 'png' => {
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

/** `torch-cka plot RESULTS --out FILE`. */
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
  const measure = stringValue(values, 'measure');
  // The report draws every measure of the file (or only --measure's) and its views and σ.
  let report = parsed as ReportResult;
  if (measure !== undefined) {
    // The chosen matrix stands in for cka; the rest of the file is checked as usual.
    const record = (parsed ?? {}) as { cka?: unknown; measures?: Record<string, unknown> };
    const measures = record.measures ?? (record.cka !== undefined ? { cka: record.cka } : {});
    if (typeof measures !== 'object' || !(measure in measures)) {
      throw usageError(
        `${file} has no measure '${measure}'; it has ${Object.keys(measures ?? {}).join(', ') || 'none'}`,
      );
    }
    parsed = { ...record, cka: measures[measure] };
    const { cka: _cka, ...rest } = record as ReportResult;
    report = {
      ...rest,
      ...(measure === 'cka' ? { cka: measures[measure] } : {}),
      measures: { [measure]: measures[measure] },
    } as ReportResult;
  }
  const result = validateResult(parsed, file);
  if (path.extname(out).toLowerCase() === '.html') {
    const cli = (parsed as { cli?: { version?: string; date?: string; argv?: string[] } }).cli;
    const html = reportHtml(report, {
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

export const plot: Command = { spec: PLOT, run: plotCommand };
