// One self-contained HTML page for a CKA result: the heatmap with tooltips, what was
// compared, and the best match of each layer. No network: inline CSS, SVG and script only.
import type { CKAResult } from '../compare/types';
import { describe, invalidArgType } from '../util/errors';
import { optionalObject } from '../util/is';
import { colorHex } from '../plot/colormap';
import { defaultTitle, heatmapSvg, type HeatmapOptions, UNDEFINED_LEGEND } from '../plot/heatmap';
import { optionalText } from '../plot/options';
import { escapeXml as escapeHtml, formatCka } from '../plot/text';
import { validateResult } from '../plot/validate';
import { bestMatches } from './best-match';
import { primaryMatrix } from '../compare/measures';

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
  /** Passed on to heatmapSvg (e.g. `colormap`); `title` comes from above. */
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

/** JSON for a `<script type="application/json">` block: nothing in it can close the element. */
const scriptJson = (value: unknown): string =>
  JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');

const STYLE = `
:root { color-scheme: light; --ink: #1f2328; --muted: #656d76; --line: #d8dee4; --soft: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.5;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", "Liberation Sans", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 20px 48px; }
header h1 { font-size: 1.6rem; margin: 0 0 4px; line-height: 1.25; overflow-wrap: anywhere; }
header p { margin: 0; color: var(--muted); font-size: 0.9rem; }
h2 { font-size: 1.15rem; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.figure { margin: 20px 0 0; text-align: center; }
.figure svg { max-width: 100%; height: auto; display: inline-block; }
.figure figcaption { color: var(--muted); font-size: 0.85rem; margin-top: 6px; }
.stats { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0 0; padding: 0; list-style: none; }
.stats li { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.stats .label { display: block; color: var(--muted); font-size: 0.8rem; }
.stats .value { font-size: 1.15rem; font-variant-numeric: tabular-nums; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.92rem; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
thead th { background: var(--soft); font-weight: 600; }
tbody tr:hover { background: #f3f6fa; }
th[scope="row"] { font-weight: 600; white-space: nowrap; width: 1%; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 0.86em; }
td code { background: var(--soft); padding: 1px 4px; border-radius: 4px; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; }
.none, .muted { color: var(--muted); }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; margin-right: 6px; vertical-align: -0.1em; border: 1px solid rgba(0,0,0,0.15); }
#tooltip { position: fixed; z-index: 10; pointer-events: none; max-width: min(420px, 90vw); padding: 6px 10px;
  background: rgba(31, 35, 40, 0.94); color: #fff; border-radius: 6px; font-size: 0.85rem; line-height: 1.4;
  box-shadow: 0 4px 14px rgba(0,0,0,0.25); overflow-wrap: anywhere; }
#tooltip[hidden] { display: none; }
#tooltip .k { color: #9fb3c8; margin-right: 6px; }
#tooltip .v { font-weight: 600; font-variant-numeric: tabular-nums; }
.tcka-cell:focus { outline: none; stroke: #00e5ff; stroke-width: 2px; }
footer { color: var(--muted); font-size: 0.8rem; margin-top: 40px; }
`;

// Runs in the page. Plain ES2017, no dependencies; text goes in through textContent only.
const SCRIPT = `
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('cka-data').textContent);
  var tip = document.getElementById('tooltip');
  var svg = document.querySelector('.figure svg');
  if (!svg || !tip) return;
  var rows = data.model1Layers.length, cols = data.model2Layers.length;
  var cells = svg.querySelectorAll('rect[data-row][data-col]');
  var grid = new Array(rows * cols);
  for (var n = 0; n < cells.length; n++) {
    var c = cells[n];
    var title = c.querySelector('title');
    if (title) { c.setAttribute('aria-label', title.textContent); title.remove(); }
    c.setAttribute('role', 'img');
    c.setAttribute('tabindex', '-1');
    grid[Number(c.getAttribute('data-row')) * cols + Number(c.getAttribute('data-col'))] = c;
  }
  // One cell is in the tab order (the top-left one); the arrow keys move between cells.
  var start = grid[(rows - 1) * cols];
  if (start) start.setAttribute('tabindex', '0');

  function format(value) {
    var text = value.toFixed(3);
    return /^-0\\.?0*$/.test(text) ? text.slice(1) : text;
  }
  function line(key, value, cls) {
    var div = document.createElement('div');
    var k = document.createElement('span');
    k.className = 'k';
    k.textContent = key;
    var v = document.createElement('span');
    if (cls) v.className = cls;
    v.textContent = value;
    div.appendChild(k);
    div.appendChild(v);
    return div;
  }
  var shown = null;
  function fill(cell) {
    if (shown === cell) return;
    shown = cell;
    var i = Number(cell.getAttribute('data-row')), j = Number(cell.getAttribute('data-col'));
    var raw = cell.getAttribute('data-value');
    tip.textContent = '';
    tip.appendChild(line(data.model1Name, data.model1Layers[i]));
    tip.appendChild(line(data.model2Name, data.model2Layers[j]));
    tip.appendChild(line('CKA', raw === 'null' ? data.undefinedText : format(Number(raw)), 'v'));
    tip.hidden = false;
  }
  function place(x, y) {
    var w = tip.offsetWidth, h = tip.offsetHeight;
    var left = x + 14, top = y + 14;
    if (left + w > window.innerWidth - 4) left = Math.max(4, x - w - 14);
    if (top + h > window.innerHeight - 4) top = Math.max(4, y - h - 14);
    tip.style.left = left + 'px';
    tip.style.top = top + 'px';
  }
  function hide() { tip.hidden = true; shown = null; }
  function cellOf(target) {
    return target && target.closest ? target.closest('rect[data-row][data-col]') : null;
  }
  svg.addEventListener('mouseover', function (e) {
    var cell = cellOf(e.target);
    if (cell) { fill(cell); place(e.clientX, e.clientY); } else hide();
  });
  svg.addEventListener('mousemove', function (e) {
    if (cellOf(e.target)) place(e.clientX, e.clientY);
  });
  svg.addEventListener('mouseleave', hide);
  svg.addEventListener('focusin', function (e) {
    var cell = cellOf(e.target);
    if (!cell) return;
    fill(cell);
    var r = cell.getBoundingClientRect();
    place(r.right, r.bottom);
  });
  svg.addEventListener('focusout', hide);
  svg.addEventListener('keydown', function (e) {
    var cell = cellOf(e.target);
    if (!cell) return;
    var i = Number(cell.getAttribute('data-row')), j = Number(cell.getAttribute('data-col'));
    if (e.key === 'ArrowUp') i = Math.min(rows - 1, i + 1);
    else if (e.key === 'ArrowDown') i = Math.max(0, i - 1);
    else if (e.key === 'ArrowLeft') j = Math.max(0, j - 1);
    else if (e.key === 'ArrowRight') j = Math.min(cols - 1, j + 1);
    else if (e.key === 'Escape') { hide(); return; }
    else return;
    e.preventDefault();
    var next = grid[i * cols + j];
    if (!next || next === cell) return;
    cell.setAttribute('tabindex', '-1');
    next.setAttribute('tabindex', '0');
    next.focus();
  });
})();
`;

/** Renders a CKA result as one self-contained HTML page (a string). */
export function reportHtml(result: CKAResult, info?: ReportInfo): string {
  const data = validateResult(result, 'reportHtml(result)');
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

  const svg = heatmapSvg(data, { ...heatmapOptions, title }).replace(/^<\?xml[^>]*>\s*/, '');
  const rows = data.model1Layers.length;
  const cols = data.model2Layers.length;
  const dateText = generatedAt instanceof Date ? formatDate(generatedAt) : generatedAt;
  const dateAttr = generatedAt instanceof Date ? ` datetime="${generatedAt.toISOString()}"` : '';
  const sameData = dataset2 === undefined && data.dataset1Name === data.dataset2Name;

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
  h.push(
    `<p>Minibatch linear CKA between ${formatCount(rows)} layers of <strong>${escapeHtml(data.model1Name)}</strong>` +
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

  h.push('<figure class="figure">');
  h.push(svg.trimEnd());
  h.push(
    `<figcaption>Rows: ${escapeHtml(data.model1Name)} (first layer at the bottom). Columns: ${escapeHtml(data.model2Name)}.` +
      ' Hover a cell, or focus one with Tab and move with the arrow keys, to see its layers and value.</figcaption>',
  );
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

  h.push(`<h2>Best match in ${escapeHtml(data.model2Name)} for each layer of ${escapeHtml(data.model1Name)}</h2>`);
  h.push('<div class="table-wrap"><table class="matches">');
  h.push(
    `<thead><tr><th scope="col">${escapeHtml(data.model1Name)} layer</th>` +
      `<th scope="col">best ${escapeHtml(data.model2Name)} layer</th><th scope="col" class="num">CKA</th></tr></thead>`,
  );
  h.push('<tbody>');
  for (const match of bestMatches(data)) {
    const swatch =
      match.cka === null
        ? ''
        : `<span class="swatch" style="background:${colorHex(match.cka, heatmapOptions.colormap)}"></span>`;
    h.push(
      `<tr data-row="${match.row}"${match.col === null ? '' : ` data-col="${match.col}"`}>` +
        `<td><code>${escapeHtml(match.layer1)}</code></td>` +
        `<td>${match.layer2 === null ? EMPTY : `<code>${escapeHtml(match.layer2)}</code>`}</td>` +
        `<td class="num">${match.cka === null ? EMPTY : `${swatch}${formatCka(match.cka)}`}</td></tr>`,
    );
  }
  h.push('</tbody></table></div>');
  if (primaryMatrix(data).some((row) => row.includes(null))) {
    h.push(
      `<p class="muted">Hatched cells, and ${EMPTY} in the table: CKA is undefined because a layer is constant over the data.</p>`,
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
      undefinedText: UNDEFINED_LEGEND,
    })}</script>`,
  );
  h.push(`<script>${SCRIPT}</script>`);
  h.push('</body>');
  h.push('</html>');
  return `${h.join('\n')}\n`;
}
