// The CKA matrix as a standalone SVG heatmap, laid out like torch_cka's plot_results():
// model 1's layers up the y axis (row 0 at the bottom), model 2's along the x axis.
import type { CKAResult } from '../compare/types';
import { optionalBoolean, optionalObject, optionalOneOf, optionalInteger } from '../util/is';
import { colormapNames, type ColormapName, colormaps, colorOf, luminance, rgbHex } from './colormap';
import { optionalPositiveNumber, optionalText } from './options';
import { ellipsize, escapeXml, formatCka, num, textWidth } from './text';
import { validateResult } from './validate';
import { primaryMatrix } from '../compare/measures';

export interface HeatmapOptions {
  /** Default: `"<model1Name> vs <model2Name>"`, with each model's data set when the two differ; `''` for none. */
  title?: string;
  /** Default `'magma'`, as torch_cka. */
  colormap?: ColormapName;
  /** Side of a cell in px. Default: adapts to the number of layers (60 px for a few, 3 px for hundreds). */
  cellSize?: number;
  /**
   * Width of the whole picture in px; the cells get what the labels leave. With only one of
   * width and height the cells stay square. Overrides cellSize.
   */
  width?: number;
  /** Height of the whole picture in px (see width). */
  height?: number;
  /** Default `'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif'`. */
  fontFamily?: string;
  /** Size of the tick labels in px (titles are larger). Default 12. */
  fontSize?: number;
  /** Write the CKA values inside the cells. Default: when both sides have at most 12 layers. */
  showValues?: boolean;
  /** Longer layer names are shortened in the middle in tick labels (cell titles keep them whole). Default 60. */
  maxLabelLength?: number;
  /** Fill behind everything. Default `'white'`; `'none'` for a transparent picture. */
  background?: string;
  /** Prefix of the ids inside the SVG (pattern, gradient), for pages that hold several. Default `'tcka'`. */
  idPrefix?: string;
}

export const DEFAULT_FONT_FAMILY = 'DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif';
/** The legend text for cells whose CKA is undefined. */
export const UNDEFINED_LEGEND = 'undefined: layer constant over the data';

const PAD = 16;
const TICK = 4;
const TICK_GAP = 3;
const COLORBAR_GAP = 18;
const COLORBAR_WIDTH = 16;
const COLORBAR_TICKS = [0, 0.2, 0.4, 0.6, 0.8, 1];
const INK = '#262626';

/** The default title: model names, and data set names where they differ. */
export function defaultTitle(result: CKAResult): string {
  if (result.dataset1Name === result.dataset2Name) return `${result.model1Name} vs ${result.model2Name}`;
  return `${result.model1Name} (${result.dataset1Name}) vs ${result.model2Name} (${result.dataset2Name})`;
}

/** Every k-th label, so that labels `cell` px apart stand at least 1.25 font sizes apart. */
export const labelStep = (cell: number, fontSize: number): number => Math.max(1, Math.ceil((fontSize * 1.25) / cell));

interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** A bounding box that grows; coordinates relative to the matrix's top-left corner. */
class Extent implements Box {
  x0 = 0;
  y0 = 0;
  x1 = 0;
  y1 = 0;
  add(x0: number, y0: number, x1: number, y1: number): void {
    this.x0 = Math.min(this.x0, x0, x1);
    this.y0 = Math.min(this.y0, y0, y1);
    this.x1 = Math.max(this.x1, x0, x1);
    this.y1 = Math.max(this.y1, y0, y1);
  }
}

const maxWidth = (labels: readonly string[], fontSize: number): number =>
  labels.reduce((w, label) => Math.max(w, textWidth(label, fontSize)), 0);

const shownIndices = (count: number, step: number): number[] =>
  Array.from({ length: Math.ceil(count / step) }, (_, k) => k * step);

/** Renders a CKA result as a standalone SVG document (a string). */
export function heatmapSvg(result: CKAResult, options?: HeatmapOptions): string {
  const data = validateResult(result, 'heatmapSvg(result)');
  const opts = optionalObject(options, 'options');
  const cmap = optionalOneOf(opts.colormap, colormapNames, 'options.colormap') ?? 'magma';
  const title = optionalText(opts.title, 'options.title') ?? defaultTitle(data);
  const fontFamily = optionalText(opts.fontFamily, 'options.fontFamily') || DEFAULT_FONT_FAMILY;
  const fs = optionalPositiveNumber(opts.fontSize, 'options.fontSize') ?? 12;
  const cellSizeOption = optionalPositiveNumber(opts.cellSize, 'options.cellSize');
  const widthOption = optionalPositiveNumber(opts.width, 'options.width');
  const heightOption = optionalPositiveNumber(opts.height, 'options.height');
  const maxLabel = optionalInteger(opts.maxLabelLength, 'options.maxLabelLength', 3) ?? 60;
  const background = optionalText(opts.background, 'options.background') || 'white';
  const prefix = (optionalText(opts.idPrefix, 'options.idPrefix') || 'tcka').replace(/[^A-Za-z0-9_-]/g, '_');
  const rows = data.model1Layers.length;
  const cols = data.model2Layers.length;
  const showValuesOption = optionalBoolean(opts.showValues, 'options.showValues');
  const showValues = showValuesOption ?? (rows <= 12 && cols <= 12);

  const axisFs = Math.round(fs * 1.2 * 10) / 10;
  const titleFs = Math.round(fs * 1.45 * 10) / 10;
  const rowLabels = data.model1Layers.map((name) => ellipsize(name, maxLabel));
  const colLabels = data.model2Layers.map((name) => ellipsize(name, maxLabel));
  const yTitle = `${data.model1Name} layers`;
  const xTitle = `${data.model2Name} layers`;
  const hasNull = primaryMatrix(data).some((row) => row.includes(null));
  const cbLabelWidth = maxWidth(['0.0', '1.0'], fs);

  // Cell size: given, derived from the wanted picture size, or adapted to the number of layers.
  let cellW: number;
  let cellH: number;
  if (widthOption !== undefined || heightOption !== undefined) {
    const fixedW =
      2 * PAD +
      axisFs * 1.1 +
      10 +
      maxWidth(rowLabels, fs) +
      TICK +
      TICK_GAP +
      COLORBAR_GAP +
      COLORBAR_WIDTH +
      TICK +
      TICK_GAP +
      cbLabelWidth +
      8 +
      axisFs * 1.1;
    const fixedH =
      2 * PAD +
      (title ? titleFs * 1.1 + 14 : 0) +
      TICK +
      TICK_GAP +
      maxWidth(colLabels, fs) +
      10 +
      axisFs * 1.1 +
      (hasNull ? 10 + Math.max(14, fs * 1.2) : 0);
    const w = widthOption === undefined ? undefined : Math.max(1, (widthOption - fixedW) / cols);
    const h = heightOption === undefined ? undefined : Math.max(1, (heightOption - fixedH) / rows);
    cellW = w ?? h ?? 1;
    cellH = h ?? w ?? 1;
  } else if (cellSizeOption !== undefined) {
    cellW = cellSizeOption;
    cellH = cellSizeOption;
  } else {
    const cell = Math.min(60, Math.max(3, Math.floor(640 / Math.max(rows, cols))));
    // Keep a very flat or very narrow matrix at least ~160 px on its short side.
    cellW = cols * cell < 160 ? Math.min(60, Math.ceil(160 / cols)) : cell;
    cellH = rows * cell < 160 ? Math.min(60, Math.ceil(160 / rows)) : cell;
  }
  const W = cols * cellW;
  const H = rows * cellH;

  // Layout in coordinates relative to the matrix's top-left corner.
  const box = new Extent();
  box.add(0, 0, W, H);
  const rowStep = labelStep(cellH, fs);
  const colStep = labelStep(cellW, fs);
  const shownRows = shownIndices(rows, rowStep);
  const shownCols = shownIndices(cols, colStep);
  const yLabelW = maxWidth(
    shownRows.map((i) => rowLabels[i] ?? ''),
    fs,
  );
  const xLabelW = maxWidth(
    shownCols.map((j) => colLabels[j] ?? ''),
    fs,
  );
  const rowCenter = (i: number): number => (rows - 1 - i + 0.5) * cellH;
  const colCenter = (j: number): number => (j + 0.5) * cellW;
  const yLabelRight = -(TICK + TICK_GAP);
  box.add(yLabelRight - yLabelW, rowCenter(0) + fs * 0.6, 0, rowCenter(shownRows.at(-1) ?? 0) - fs * 0.6);
  const xLabelTop = H + TICK + TICK_GAP;
  // x labels stand upright when they all fit side by side, else they are rotated to read upwards.
  const xRotated = xLabelW + 4 > colStep * cellW;
  const xLabelDepth = xRotated ? xLabelW : fs * 1.1;
  const xLabelHalf = xRotated ? fs * 0.6 : xLabelW / 2;
  box.add(colCenter(0) - xLabelHalf, H, colCenter(shownCols.at(-1) ?? 0) + xLabelHalf, xLabelTop + xLabelDepth);

  // y axis title, rotated; its baseline is on the right of its glyphs.
  const yTitleW = textWidth(yTitle, axisFs);
  const yTitleBaseline = yLabelRight - yLabelW - 10 - axisFs * 0.25;
  box.add(yTitleBaseline - axisFs * 0.85, H / 2 - yTitleW / 2, yTitleBaseline + axisFs * 0.25, H / 2 + yTitleW / 2);

  // Colour bar on the right, with ticks 0..1 and a rotated "CKA".
  const cbX = W + COLORBAR_GAP;
  const cbH = Math.max(H, 100);
  const cbLabelX = cbX + COLORBAR_WIDTH + TICK + TICK_GAP;
  const cbTitleBaseline = cbLabelX + cbLabelWidth + 8 + axisFs * 0.85;
  box.add(cbX, -fs * 0.6, cbTitleBaseline + axisFs * 0.25, cbH + fs * 0.6);

  // x axis title below the tick labels, clear of the colour bar if it is wide enough to reach it.
  const xTitleW = textWidth(xTitle, axisFs);
  let xTitleTop = xLabelTop + xLabelDepth + 10;
  if (W / 2 + xTitleW / 2 > cbX - 6) xTitleTop = Math.max(xTitleTop, cbH + fs);
  const xTitleBaseline = xTitleTop + axisFs * 0.85;
  box.add(W / 2 - xTitleW / 2, xTitleTop, W / 2 + xTitleW / 2, xTitleBaseline + axisFs * 0.25);

  // Legend for undefined cells, only when there are some.
  const swatch = Math.max(14, Math.round(fs * 1.2));
  const legendTextW = textWidth(UNDEFINED_LEGEND, fs);
  const legendW = swatch + 6 + legendTextW;
  const legendX = W / 2 - legendW / 2;
  const legendTop = xTitleBaseline + axisFs * 0.25 + 10;
  if (hasNull) box.add(legendX, legendTop, legendX + legendW, legendTop + swatch);

  // Title above the matrix.
  const titleW = textWidth(title, titleFs);
  const titleBaseline = -14 - titleFs * 0.25;
  if (title) box.add(W / 2 - titleW / 2, titleBaseline - titleFs * 0.85, W / 2 + titleW / 2, titleBaseline);

  // Absolute coordinates.
  let docW = box.x1 - box.x0 + 2 * PAD;
  let docH = box.y1 - box.y0 + 2 * PAD;
  let ox = PAD - box.x0;
  let oy = PAD - box.y0;
  if (widthOption !== undefined && widthOption > docW) {
    ox += (widthOption - docW) / 2;
    docW = widthOption;
  }
  if (heightOption !== undefined && heightOption > docH) {
    oy += (heightOption - docH) / 2;
    docH = heightOption;
  }
  docW = Math.ceil(docW);
  docH = Math.ceil(docH);
  const X = (x: number): string => num(x + ox);
  const Y = (y: number): string => num(y + oy);

  const table = colormaps[cmap];
  const hatchId = `${prefix}-undefined`;
  const gradientId = `${prefix}-colorbar`;
  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${docW}" height="${docH}" viewBox="0 0 ${docW} ${docH}"` +
      ` font-family="${escapeXml(fontFamily)}" font-size="${num(fs)}" fill="${INK}" class="tcka-heatmap"` +
      ` data-rows="${rows}" data-cols="${cols}" data-colormap="${cmap}">`,
  );
  out.push(
    `<desc>${escapeXml(
      `CKA heatmap${title ? ` "${title}"` : ''}: rows are ${rows} layers of ${data.model1Name} (first at the bottom), ` +
        `columns are ${cols} layers of ${data.model2Name} (first at the left).`,
    )}</desc>`,
  );
  out.push('<defs>');
  out.push(
    `<pattern id="${hatchId}" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">` +
      '<rect width="6" height="6" fill="#e6e6e6"/><line x1="1.5" y1="0" x2="1.5" y2="6" stroke="#9e9e9e" stroke-width="1.5"/>' +
      '</pattern>',
  );
  out.push(`<linearGradient id="${gradientId}" x1="0" y1="1" x2="0" y2="0">`);
  table.forEach((rgb, i) =>
    out.push(`<stop offset="${num((i / (table.length - 1)) * 100)}%" stop-color="${rgbHex(rgb)}"/>`),
  );
  out.push('</linearGradient>');
  out.push('</defs>');
  if (background !== 'none') out.push(`<rect width="100%" height="100%" fill="${escapeXml(background)}"/>`);

  if (title) {
    out.push(
      `<text class="tcka-title" x="${X(W / 2)}" y="${Y(titleBaseline)}" font-size="${num(titleFs)}" text-anchor="middle">${escapeXml(title)}</text>`,
    );
  }

  // Cells.
  out.push(`<g class="tcka-cells" shape-rendering="crispEdges">`);
  for (let i = 0; i < rows; i += 1) {
    const rowName = data.model1Layers[i] ?? '';
    const row = primaryMatrix(data)[i] ?? [];
    const y = Y((rows - 1 - i) * cellH);
    for (let j = 0; j < cols; j += 1) {
      const value = row[j] ?? null;
      const fill = value === null ? `url(#${hatchId})` : rgbHex(colorOf(value, cmap));
      const label = value === null ? 'undefined (a layer is constant over the data)' : formatCka(value);
      out.push(
        `<rect class="tcka-cell" x="${X(j * cellW)}" y="${y}" width="${num(cellW)}" height="${num(cellH)}" fill="${fill}"` +
          ` data-row="${i}" data-col="${j}" data-value="${value === null ? 'null' : String(value)}">` +
          `<title>${escapeXml(`${rowName} × ${data.model2Layers[j] ?? ''}: ${label}`)}</title></rect>`,
      );
    }
  }
  out.push('</g>');
  out.push(
    `<rect x="${X(0)}" y="${Y(0)}" width="${num(W)}" height="${num(H)}" fill="none" stroke="${INK}" stroke-width="1"/>`,
  );

  // Values inside cells.
  const valueFs = Math.min(fs, cellH * 0.42, (cellW * 0.9) / (4 * 0.66));
  if (showValues && valueFs >= 4) {
    out.push(`<g class="tcka-values" font-size="${num(valueFs)}" text-anchor="middle" pointer-events="none">`);
    primaryMatrix(data).forEach((row, i) =>
      row.forEach((value, j) => {
        if (value === null) return;
        const ink = luminance(colorOf(value, cmap)) > 0.179 ? '#000000' : '#ffffff';
        out.push(
          `<text x="${X(colCenter(j))}" y="${Y(rowCenter(i) + valueFs * 0.35)}" fill="${ink}">${formatCka(value, 2)}</text>`,
        );
      }),
    );
    out.push('</g>');
  }

  // Ticks and tick labels.
  out.push(`<g class="tcka-ticks" stroke="${INK}" stroke-width="1">`);
  for (const i of shownRows)
    out.push(`<line x1="${X(-TICK)}" y1="${Y(rowCenter(i))}" x2="${X(0)}" y2="${Y(rowCenter(i))}"/>`);
  for (const j of shownCols)
    out.push(`<line x1="${X(colCenter(j))}" y1="${Y(H)}" x2="${X(colCenter(j))}" y2="${Y(H + TICK)}"/>`);
  out.push('</g>');
  out.push(`<g class="tcka-ylabels" text-anchor="end">`);
  for (const i of shownRows) {
    out.push(
      `<text x="${X(yLabelRight)}" y="${Y(rowCenter(i) + fs * 0.35)}" data-row="${i}">${escapeXml(rowLabels[i] ?? '')}</text>`,
    );
  }
  out.push('</g>');
  out.push(`<g class="tcka-xlabels" text-anchor="${xRotated ? 'end' : 'middle'}">`);
  for (const j of shownCols) {
    if (!xRotated) {
      out.push(
        `<text x="${X(colCenter(j))}" y="${Y(xLabelTop + fs * 0.8)}" data-col="${j}">${escapeXml(colLabels[j] ?? '')}</text>`,
      );
      continue;
    }
    out.push(
      `<text transform="translate(${X(colCenter(j) + fs * 0.35)} ${Y(xLabelTop)}) rotate(-90)" data-col="${j}">${escapeXml(colLabels[j] ?? '')}</text>`,
    );
  }
  out.push('</g>');

  // Axis titles.
  out.push(
    `<text class="tcka-ytitle" transform="translate(${X(yTitleBaseline)} ${Y(H / 2)}) rotate(-90)" font-size="${num(axisFs)}" text-anchor="middle">${escapeXml(yTitle)}</text>`,
  );
  out.push(
    `<text class="tcka-xtitle" x="${X(W / 2)}" y="${Y(xTitleBaseline)}" font-size="${num(axisFs)}" text-anchor="middle">${escapeXml(xTitle)}</text>`,
  );

  // Colour bar.
  out.push(`<g class="tcka-colorbar">`);
  out.push(
    `<rect x="${X(cbX)}" y="${Y(0)}" width="${COLORBAR_WIDTH}" height="${num(cbH)}" fill="url(#${gradientId})" stroke="${INK}" stroke-width="1"/>`,
  );
  for (const t of COLORBAR_TICKS) {
    const y = cbH * (1 - t);
    out.push(
      `<line x1="${X(cbX + COLORBAR_WIDTH)}" y1="${Y(y)}" x2="${X(cbX + COLORBAR_WIDTH + TICK)}" y2="${Y(y)}" stroke="${INK}" stroke-width="1"/>`,
    );
    out.push(`<text x="${X(cbLabelX)}" y="${Y(y + fs * 0.35)}" data-tick="${t}">${t.toFixed(1)}</text>`);
  }
  out.push(
    `<text transform="translate(${X(cbTitleBaseline)} ${Y(cbH / 2)}) rotate(-90)" font-size="${num(axisFs)}" text-anchor="middle">CKA</text>`,
  );
  out.push('</g>');

  if (hasNull) {
    out.push(`<g class="tcka-legend">`);
    out.push(
      `<rect x="${X(legendX)}" y="${Y(legendTop)}" width="${swatch}" height="${swatch}" fill="url(#${hatchId})" stroke="${INK}" stroke-width="0.5"/>`,
    );
    out.push(
      `<text x="${X(legendX + swatch + 6)}" y="${Y(legendTop + swatch / 2 + fs * 0.35)}">${escapeXml(UNDEFINED_LEGEND)}</text>`,
    );
    out.push('</g>');
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
