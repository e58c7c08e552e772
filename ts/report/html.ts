// One self-contained HTML page for a CKA result: the heatmap of every measure on a canvas with
// tooltips and keyboard moves, what was compared, and the best match of each layer. No network:
// inline CSS and script only; the matrices travel packed (encode.ts), not as one element per cell.
import { NULL_REASONS } from '../compare/measures';
import type { CKAResult } from '../compare/types';
import { describe, ErrorCodes, invalidArgType, makeError } from '../util/errors';
import { optionalBoolean, optionalInteger, optionalObject, optionalOneOf } from '../util/is';
import { colorHex, colormapNames, colormaps, rgbHex } from '../plot/colormap';
import { DEFAULT_FONT_FAMILY, defaultTitle, type HeatmapOptions, UNDEFINED_LEGEND } from '../plot/heatmap';
import { optionalPositiveNumber, optionalText } from '../plot/options';
import { ellipsize, escapeXml as escapeHtml, formatCka } from '../plot/text';
import { validateResult } from '../plot/validate';
import { bestMatches } from './best-match';
import { packMatrix } from './encode';
import { SCRIPT, STYLE } from './page';

/** A matrix of one measure: rows are model 1's layers, columns model 2's; null where undefined. */
export type ReportMatrix = Array<Array<number | null>>;

/**
 * What reportHtml draws: a {@link CKAResult} as export() gives it, or as an
 * older results file holds it (without views: every view is `flatten`;
 * without `measures`: the only measure is `cka`).
 */
export type ReportResult = Omit<CKAResult, 'model1Views' | 'model2Views'> & {
  model1Views?: string[];
  model2Views?: string[];
};

export interface ReportModelInfo {
  /** The model file. */
  path?: string;
  /** Where it ran, e.g. `cpu` or `cuda:0`. */
  device?: string;
  /** How many layers the model has (shown beside the number compared when they differ). */
  layerCount?: number;
}

export interface ReportDatasetInfo {
  path?: string;
  /** One line about the data, e.g. "1000 images 3x32x32 from cifar10/test". */
  description?: string;
}

export interface ReportInfo {
  /** Page and heatmap title; default as heatmapSvg's. */
  title?: string;
  model1?: ReportModelInfo;
  model2?: ReportModelInfo;
  dataset1?: ReportDatasetInfo;
  /** Omit when model 2 saw the same data as model 1. */
  dataset2?: ReportDatasetInfo;
  /** Default: now. */
  generatedAt?: string | Date;
  /** The torch-cka version that made the result. */
  version?: string;
  /** The command line that made the result. */
  command?: string;
  elapsedSeconds?: number;
  /**
   * The heatmap's look: `colormap`, `fontFamily`, `fontSize`, `maxLabelLength`, `showValues`
   * and `cellSize` (the largest cell side in px; cells shrink to fit the page) apply; the
   * SVG-only `width`, `height`, `background` and `idPrefix` are ignored by the canvas.
   */
  heatmap?: HeatmapOptions;
}

const EMPTY = '—';

function optionalCount(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw invalidArgType(`Expected a non-negative integer for ${name} but received ${describe(value)}`);
  }
  return value;
}

function optionalSeconds(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw invalidArgType(
      `Expected a non-negative number of seconds for info.elapsedSeconds but received ${describe(value)}`,
    );
  }
  return value;
}

function modelInfo(value: unknown, name: string): ReportModelInfo {
  const opts = optionalObject(value, name);
  return {
    path: optionalText(opts.path, `${name}.path`),
    device: optionalText(opts.device, `${name}.device`),
    layerCount: optionalCount(opts.layerCount, `${name}.layerCount`),
  };
}

function datasetInfo(value: unknown, name: string): ReportDatasetInfo {
  const opts = optionalObject(value, name);
  return {
    path: optionalText(opts.path, `${name}.path`),
    description: optionalText(opts.description, `${name}.description`),
  };
}

function dateInfo(value: unknown): Date | string {
  if (value === undefined) return new Date();
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw invalidArgType('Expected a valid Date for info.generatedAt');
    return value;
  }
  if (typeof value === 'string') {
    const parsed = new Date(value);
    return /^\d{4}-\d\d-\d\d/.test(value) && !Number.isNaN(parsed.getTime()) ? parsed : value;
  }
  throw invalidArgType(`Expected a string or Date for info.generatedAt but received ${describe(value)}`);
}

const formatDate = (date: Date): string => `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;

const formatCount = (n: number): string => n.toLocaleString('en-US');

export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(2) : seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds - minutes * 60);
  if (minutes < 60) return `${minutes} min ${rest} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** `text` escaped, or a dash when absent. */
const cell = (text: string | undefined): string =>
  text === undefined || text === '' ? `<span class="none">${EMPTY}</span>` : escapeHtml(text);

const code = (text: string | undefined): string =>
  text === undefined || text === '' ? cell(undefined) : `<code>${escapeHtml(text)}</code>`;

function layersCell(compared: number, total: number | undefined): string {
  return total === undefined || total === compared
    ? formatCount(compared)
    : `${formatCount(compared)} <span class="muted">of ${formatCount(total)}</span>`;
}

const MEASURE_LABELS: Record<string, string> = {
  cka: 'CKA',
  rbf_cka: 'RBF CKA',
  dcor: 'dCor',
  linear_cka_biased: 'CKA (biased)',
  rbf_cka_biased: 'RBF CKA (biased)',
  cca_rho: 'CCA ρ',
  cca_r2: 'CCA R²',
  svcca: 'SVCCA',
  procrustes: 'Procrustes',
  rsa: 'RSA',
  mknn: 'mutual k-NN',
};
const MEASURE_NAMES: Record<string, string> = {
  cka: 'linear CKA',
  rbf_cka: 'RBF-kernel CKA',
  dcor: 'bias-corrected distance correlation',
  linear_cka_biased: 'biased linear CKA',
  rbf_cka_biased: 'biased RBF-kernel CKA',
  cca_rho: 'mean canonical correlation',
  cca_r2: 'mean squared canonical correlation',
  svcca: 'SVCCA',
  procrustes: 'orthogonal Procrustes similarity',
  rsa: 'RSA (Spearman correlation of distances)',
  mknn: 'mutual k-NN alignment',
};

/**
 * A measure's null reasons (full-batch results), packed for the page: the
 * distinct reasons and, row-major, each cell's index in them (-1: a value).
 */
function packReasons(reasons: Array<Array<string | null>> | undefined): { codes: string[]; cells: number[] } | null {
  if (reasons === undefined) return null;
  const codes: string[] = [];
  const cells = reasons.flatMap((row) =>
    row.map((reason) => {
      if (reason === null) return -1;
      if (!codes.includes(reason)) codes.push(reason);
      return codes.indexOf(reason);
    }),
  );
  return { codes, cells };
}

/** The optional nullReasons of a full-batch result: per measure, a rows x cols matrix of strings or null. */
function checkReasons(
  value: unknown,
  rows: number,
  cols: number,
  source: string,
): Record<string, Array<Array<string | null>>> | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    invalid(source, `expected an object of reason matrices for nullReasons but received ${describe(value)}`);
  }
  const out: Record<string, Array<Array<string | null>>> = {};
  for (const [id, matrix] of Object.entries(value as Record<string, unknown>)) {
    const ok =
      Array.isArray(matrix) &&
      matrix.length === rows &&
      matrix.every(
        (row) =>
          Array.isArray(row) && row.length === cols && row.every((cell) => cell === null || typeof cell === 'string'),
      );
    if (!ok) invalid(source, `expected a ${rows} x ${cols} matrix of reasons or null for nullReasons.${id}`);
    out[id] = matrix as Array<Array<string | null>>;
  }
  return out;
}
const measureLabel = (id: string): string => MEASURE_LABELS[id] ?? id;
const measureName = (id: string): string => MEASURE_NAMES[id] ?? id;

function invalid(source: string, what: string): never {
  throw makeError(TypeError, ErrorCodes.INVALID_RESULT, `Invalid CKA result in ${source}: ${what}`);
}

function checkMatrix(value: unknown, name: string, rows: number, cols: number, source: string): ReportMatrix {
  if (!Array.isArray(value)) invalid(source, `expected an array of rows for ${name} but received ${describe(value)}`);
  if (value.length !== rows) invalid(source, `${name} has ${value.length} rows but model1Layers has ${rows} layers`);
  return value.map((row: unknown, i) => {
    if (!Array.isArray(row)) invalid(source, `expected an array for ${name}[${i}] but received ${describe(row)}`);
    if (row.length !== cols) {
      invalid(source, `${name}[${i}] has ${row.length} values but model2Layers has ${cols} layers`);
    }
    return row.map((cell: unknown, j) => {
      if (cell === null) return null;
      if (typeof cell !== 'number' || !Number.isFinite(cell)) {
        invalid(source, `expected a finite number or null for ${name}[${i}][${j}] but received ${describe(cell)}`);
      }
      return cell;
    });
  });
}

function checkViews(value: unknown, name: string, count: number, source: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || value.length !== count || value.some((v) => typeof v !== 'string')) {
    invalid(source, `expected ${count} view names (strings) for ${name} but received ${describe(value)}`);
  }
  return [...(value as string[])];
}

function checkSigmas(value: unknown, name: string, count: number, source: string): Array<number | null> {
  if (!Array.isArray(value) || value.length !== count) {
    invalid(source, `expected an array of ${count} σ values for ${name} but received ${describe(value)}`);
  }
  value.forEach((s: unknown, k) => {
    if (s !== null && (typeof s !== 'number' || !Number.isFinite(s) || s < 0)) {
      invalid(source, `expected a non-negative number or null for ${name}[${k}] but received ${describe(s)}`);
    }
  });
  return [...(value as Array<number | null>)];
}

interface CheckedResult {
  base: CKAResult;
  measures: Array<{ id: string; matrix: ReportMatrix }>;
  model1Views?: string[];
  model2Views?: string[];
  rbf?: { threshold: number; sigma1: Array<number | null>; sigma2: Array<number | null> };
  /** Full-batch results: N and why null cells are null. */
  fullBatch?: number;
  nullReasons?: Record<string, Array<Array<string | null>>>;
}

/** validateResult, plus the optional measures, views and rbf fields; `cka` may be absent when `measures` is there. */
function checkResult(value: unknown, source: string): CheckedResult {
  const record = (value !== null && typeof value === 'object' ? value : {}) as Record<string, unknown>;
  const rawMeasures = record.measures;
  if (rawMeasures !== undefined) {
    if (rawMeasures === null || typeof rawMeasures !== 'object' || Array.isArray(rawMeasures)) {
      invalid(source, `expected an object of matrices for measures but received ${describe(rawMeasures)}`);
    }
    if (Object.keys(rawMeasures).length === 0) invalid(source, 'measures is empty; expected at least one measure');
  }
  const first = rawMeasures === undefined ? undefined : Object.values(rawMeasures)[0];
  const base = validateResult(
    record.cka === undefined && first !== undefined ? { ...record, cka: first } : value,
    source,
  );
  const rows = base.model1Layers.length;
  const cols = base.model2Layers.length;
  const measures =
    rawMeasures === undefined
      ? [{ id: 'cka', matrix: base.cka as ReportMatrix }] // validateResult fills cka
      : Object.entries(rawMeasures as Record<string, unknown>).map(([id, matrix]) => ({
          id,
          matrix: checkMatrix(matrix, `measures.${id}`, rows, cols, source),
        }));
  if (record.cka !== undefined && base.cka !== undefined && !measures.some((m) => m.id === 'cka')) {
    measures.unshift({ id: 'cka', matrix: base.cka as ReportMatrix });
  }
  let rbf: CheckedResult['rbf'];
  if (record.rbf !== undefined) {
    const r = record.rbf as Record<string, unknown>;
    if (r === null || typeof r !== 'object' || typeof r.threshold !== 'number' || !Number.isFinite(r.threshold)) {
      invalid(source, `expected { threshold, sigma1, sigma2 } for rbf but received ${describe(record.rbf)}`);
    }
    rbf = {
      threshold: r.threshold,
      sigma1: checkSigmas(r.sigma1, 'rbf.sigma1', rows, source),
      sigma2: checkSigmas(r.sigma2, 'rbf.sigma2', cols, source),
    };
  }
  const fullBatch = record.fullBatch;
  if (fullBatch !== undefined && (typeof fullBatch !== 'number' || !Number.isInteger(fullBatch) || fullBatch < 1)) {
    invalid(source, `expected a sample count for fullBatch but received ${describe(fullBatch)}`);
  }
  const nullReasons = checkReasons(record.nullReasons, rows, cols, source);
  return {
    base,
    measures,
    ...(fullBatch === undefined ? {} : { fullBatch: fullBatch as number }),
    ...(nullReasons === undefined ? {} : { nullReasons }),
    model1Views: checkViews(record.model1Views, 'model1Views', rows, source),
    model2Views: checkViews(record.model2Views, 'model2Views', cols, source),
    rbf,
  };
}

/** A layer's tick label: shortened in the middle, with its view when the model has views other than flatten. */
function tickLabels(names: string[], views: string[] | undefined, max: number): string[] {
  const show = views !== undefined && views.some((v) => v !== 'flatten');
  return names.map((name, k) => (show ? `${ellipsize(name, max)} [${views[k]}]` : ellipsize(name, max)));
}

/** JSON for a `<script type="application/json">` block: nothing in it can close the element. */
const scriptJson = (value: unknown): string =>
  JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');

/** Renders a CKA result as one self-contained HTML page (a string). */
export function reportHtml(result: ReportResult | CKAResult, info?: ReportInfo): string {
  const checked = checkResult(result, 'reportHtml(result)');
  const data = checked.base;
  const opts = optionalObject(info, 'info');
  const title = optionalText(opts.title, 'info.title') || defaultTitle(data);
  const model1 = modelInfo(opts.model1, 'info.model1');
  const model2 = modelInfo(opts.model2, 'info.model2');
  const dataset1 = datasetInfo(opts.dataset1, 'info.dataset1');
  const dataset2 = opts.dataset2 === undefined ? undefined : datasetInfo(opts.dataset2, 'info.dataset2');
  const generatedAt = dateInfo(opts.generatedAt);
  const version = optionalText(opts.version, 'info.version');
  const command = optionalText(opts.command, 'info.command');
  const elapsed = optionalSeconds(opts.elapsedSeconds);
  const heatmapOptions = optionalObject(opts.heatmap, 'info.heatmap') as HeatmapOptions;
  const colormap = optionalOneOf(heatmapOptions.colormap, colormapNames, 'info.heatmap.colormap') ?? 'magma';
  const fontFamily = optionalText(heatmapOptions.fontFamily, 'info.heatmap.fontFamily') || DEFAULT_FONT_FAMILY;
  const fontSize = optionalPositiveNumber(heatmapOptions.fontSize, 'info.heatmap.fontSize') ?? 12;
  const maxCell = optionalPositiveNumber(heatmapOptions.cellSize, 'info.heatmap.cellSize') ?? 60;
  const maxLabel = optionalInteger(heatmapOptions.maxLabelLength, 'info.heatmap.maxLabelLength', 3) ?? 60;

  const rows = data.model1Layers.length;
  const cols = data.model2Layers.length;
  const showValues =
    optionalBoolean(heatmapOptions.showValues, 'info.heatmap.showValues') ?? (rows <= 12 && cols <= 12);
  const { measures } = checked;
  const initial = Math.max(
    0,
    measures.findIndex((m) => m.id === 'cka'),
  );
  const multi = measures.length > 1;
  const dateText = generatedAt instanceof Date ? formatDate(generatedAt) : generatedAt;
  const dateAttr = generatedAt instanceof Date ? ` datetime="${generatedAt.toISOString()}"` : '';
  const sameData = dataset2 === undefined && data.dataset1Name === data.dataset2Name;
  const hasNull = measures.some((m) => m.matrix.some((row) => row.includes(null)));

  const h: string[] = [];
  h.push('<!DOCTYPE html>');
  h.push('<html lang="en">');
  h.push('<head>');
  h.push('<meta charset="utf-8">');
  h.push('<meta name="viewport" content="width=device-width, initial-scale=1">');
  h.push(
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">`,
  );
  h.push(`<meta name="generator" content="torch-cka${version ? ` ${escapeHtml(version)}` : ''}">`);
  h.push(`<title>${escapeHtml(title)} — CKA report</title>`);
  h.push(`<style>${STYLE}</style>`);
  h.push('</head>');
  h.push('<body>');
  h.push('<main>');
  h.push('<header>');
  h.push(`<h1>${escapeHtml(title)}</h1>`);
  const what =
    checked.fullBatch !== undefined
      ? `Full-batch (${formatCount(checked.fullBatch)} samples) ${measures.map((m) => escapeHtml(measureName(m.id))).join(', ')}`
      : measures.length === 1 && measures[0]?.id === 'cka'
        ? 'Minibatch linear CKA'
        : `Minibatch ${measures.map((m) => escapeHtml(measureName(m.id))).join(', ')}`;
  h.push(
    `<p>${what} between ${formatCount(rows)} layers of <strong>${escapeHtml(data.model1Name)}</strong>` +
      ` and ${formatCount(cols)} layers of <strong>${escapeHtml(data.model2Name)}</strong>` +
      ` · generated <time${dateAttr}>${escapeHtml(dateText)}</time>` +
      (version ? ` by torch-cka ${escapeHtml(version)}` : '') +
      '</p>',
  );
  h.push('</header>');

  h.push('<ul class="stats">');
  const stat = (label: string, value: string, id: string): void => {
    h.push(`<li><span class="label">${label}</span><span class="value" id="${id}">${value}</span></li>`);
  };
  stat('Samples compared', formatCount(data.samples), 'samples');
  stat('Batches', formatCount(data.batches), 'batches');
  stat('Matrix', `${formatCount(rows)} × ${formatCount(cols)}`, 'shape');
  if (elapsed !== undefined) stat('Time', escapeHtml(formatSeconds(elapsed)), 'elapsed');
  h.push('</ul>');

  h.push('<figure class="figure" id="heatmap">');
  if (multi) {
    h.push('<div class="measures" role="tablist" aria-label="Measure">');
    measures.forEach((m, k) => {
      const selected = k === initial;
      h.push(
        `<button type="button" role="tab" id="measure-tab-${k}" data-measure="${escapeHtml(m.id)}"` +
          ` aria-selected="${selected}" aria-controls="heatmap-canvas" tabindex="${selected ? 0 : -1}"` +
          ` title="${escapeHtml(measureName(m.id))}">${escapeHtml(measureLabel(m.id))}</button>`,
      );
    });
    h.push('</div>');
  }
  const canvasLabel =
    `{measure} heatmap of ${rows} layers of ${data.model1Name} (rows, first at the bottom) against ` +
    `${cols} layers of ${data.model2Name} (columns). Use the arrow keys to move between cells.`;
  h.push(
    `<canvas id="heatmap-canvas" tabindex="0" role="application" aria-roledescription="heatmap"` +
      ` aria-label="${escapeHtml(canvasLabel.replace('{measure}', measureLabel(measures[initial]?.id ?? 'cka')))}"` +
      ` aria-describedby="heatmap-live" width="600" height="400"></canvas>`,
  );
  h.push('<div id="heatmap-live" class="sr-only" role="status" aria-live="polite"></div>');
  h.push(
    `<figcaption>Rows: ${escapeHtml(data.model1Name)} (first layer at the bottom). Columns: ${escapeHtml(data.model2Name)}.` +
      ' Hover a cell, or focus the heatmap with Tab and move with the arrow keys, to see its layers and value;' +
      ' hover a layer label for its full name.' +
      (multi ? ' The buttons above switch the measure.' : '') +
      '</figcaption>',
  );
  h.push('<noscript><p class="muted">The heatmap needs JavaScript; the tables below do not.</p></noscript>');
  h.push('</figure>');

  h.push('<h2>Models</h2>');
  h.push('<div class="table-wrap"><table class="models">');
  h.push(
    '<thead><tr><th scope="col"></th><th scope="col">Model 1 (rows)</th><th scope="col">Model 2 (columns)</th></tr></thead>',
  );
  h.push('<tbody>');
  h.push(`<tr><th scope="row">Name</th><td>${cell(data.model1Name)}</td><td>${cell(data.model2Name)}</td></tr>`);
  h.push(`<tr><th scope="row">File</th><td>${code(model1.path)}</td><td>${code(model2.path)}</td></tr>`);
  h.push(`<tr><th scope="row">Device</th><td>${cell(model1.device)}</td><td>${cell(model2.device)}</td></tr>`);
  h.push(
    `<tr><th scope="row">Layers compared</th><td class="layers1">${layersCell(rows, model1.layerCount)}</td>` +
      `<td class="layers2">${layersCell(cols, model2.layerCount)}</td></tr>`,
  );
  if (checked.model1Views !== undefined || checked.model2Views !== undefined) {
    const viewsCell = (views: string[] | undefined): string => {
      const counts = new Map<string, number>();
      for (const v of views ?? ['flatten']) counts.set(v, (counts.get(v) ?? 0) + (views ? 1 : 0));
      return [...counts]
        .map(
          ([v, n]) => `<code>${escapeHtml(v)}</code>${views ? ` <span class="muted">× ${formatCount(n)}</span>` : ''}`,
        )
        .join(', ');
    };
    h.push(
      `<tr><th scope="row">Views</th><td class="views1">${viewsCell(checked.model1Views)}</td>` +
        `<td class="views2">${viewsCell(checked.model2Views)}</td></tr>`,
    );
  }
  h.push('</tbody></table></div>');

  h.push('<h2>Data</h2>');
  h.push('<div class="table-wrap"><table class="datasets">');
  h.push(
    '<thead><tr><th scope="col"></th><th scope="col">Data set 1 (model 1)</th><th scope="col">Data set 2 (model 2)</th></tr></thead>',
  );
  h.push('<tbody>');
  const d2 = sameData ? dataset1 : (dataset2 ?? {});
  const same = sameData ? ' <span class="muted">(the same data)</span>' : '';
  h.push(
    `<tr><th scope="row">Name</th><td>${cell(data.dataset1Name)}</td><td>${cell(data.dataset2Name)}${same}</td></tr>`,
  );
  h.push(`<tr><th scope="row">Path</th><td>${code(dataset1.path)}</td><td>${code(d2.path)}</td></tr>`);
  h.push(
    `<tr><th scope="row">Description</th><td>${cell(dataset1.description)}</td><td>${cell(d2.description)}</td></tr>`,
  );
  h.push('</tbody></table></div>');
  if (checked.rbf !== undefined) {
    h.push(
      `<p class="muted" id="rbf">RBF CKA: σ of each layer = ${escapeHtml(String(checked.rbf.threshold))} × √(median squared distance` +
        `${checked.fullBatch !== undefined ? ' over the whole set' : ' of the first batch'}), or as given; the tooltip of each cell shows both σ.</p>`,
    );
  }

  measures.forEach((m, k) => {
    const label = escapeHtml(measureLabel(m.id));
    h.push(`<section data-measure-section="${escapeHtml(m.id)}"${k === initial ? '' : ' hidden'}>`);
    h.push(
      `<h2>Best match in ${escapeHtml(data.model2Name)} for each layer of ${escapeHtml(data.model1Name)}` +
        `${multi ? ` by ${label}` : ''}</h2>`,
    );
    h.push(`<div class="table-wrap"><table class="matches" data-measure="${escapeHtml(m.id)}">`);
    h.push(
      `<thead><tr><th scope="col">${escapeHtml(data.model1Name)} layer</th>` +
        `<th scope="col">best ${escapeHtml(data.model2Name)} layer</th><th scope="col" class="num">${label}</th></tr></thead>`,
    );
    h.push('<tbody>');
    for (const match of bestMatches({ ...data, cka: m.matrix })) {
      const swatch =
        match.cka === null ? '' : `<span class="swatch" style="background:${colorHex(match.cka, colormap)}"></span>`;
      h.push(
        `<tr data-row="${match.row}"${match.col === null ? '' : ` data-col="${match.col}"`}>` +
          `<td><code>${escapeHtml(match.layer1)}</code></td>` +
          `<td>${match.layer2 === null ? EMPTY : `<code>${escapeHtml(match.layer2)}</code>`}</td>` +
          `<td class="num">${match.cka === null ? EMPTY : `${swatch}${formatCka(match.cka)}`}</td></tr>`,
      );
    }
    h.push('</tbody></table></div>');
    h.push('</section>');
  });
  if (hasNull) {
    h.push(
      `<p class="muted">Hatched cells, and ${EMPTY} in the table: the measure is undefined because a layer is constant over the data.</p>`,
    );
  }

  if (command) {
    h.push('<h2>Command</h2>');
    h.push(`<pre><code id="command">${escapeHtml(command)}</code></pre>`);
  }
  h.push(
    `<footer>Made with torch-cka${version ? ` ${escapeHtml(version)}` : ''}: minibatch CKA with unbiased HSIC` +
      ' (Nguyen, Raghu &amp; Kornblith, 2021). This page makes no network requests.</footer>',
  );
  h.push('</main>');
  h.push('<div id="tooltip" role="tooltip" hidden></div>');
  h.push(
    `<script type="application/json" id="cka-data">${scriptJson({
      model1Name: data.model1Name,
      model2Name: data.model2Name,
      model1Layers: data.model1Layers,
      model2Layers: data.model2Layers,
      model1Views: checked.model1Views ?? null,
      model2Views: checked.model2Views ?? null,
      rowLabels: tickLabels(data.model1Layers, checked.model1Views, maxLabel),
      colLabels: tickLabels(data.model2Layers, checked.model2Views, maxLabel),
      rbf: checked.rbf ?? null,
      measures: measures.map((m) => ({
        id: m.id,
        label: measureLabel(m.id),
        ...packMatrix(m.matrix),
        reasons: packReasons(checked.nullReasons?.[m.id]),
      })),
      reasonTexts: NULL_REASONS,
      initial,
      hasNull,
      showValues,
      colormap: colormaps[colormap].map(rgbHex),
      fontFamily,
      fontSize,
      maxCell,
      canvasLabel,
      undefinedText: UNDEFINED_LEGEND,
    })}</script>`,
  );
  h.push(`<script>${SCRIPT}</script>`);
  h.push('</body>');
  h.push('</html>');
  return `${h.join('\n')}\n`;
}
