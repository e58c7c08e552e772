// What the CLI writes: results.json, the CSV matrix, and text tables.

import type { CKAResult } from '../compare/types';
import { primaryMatrix } from '../compare/measures';

/** One CSV field, quoted when it holds a comma, quote or line break (RFC 4180). */
const csvField = (text: string): string => (/[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text);

/**
 * The matrix as CSV: a header row with model 2's layers, then one row per
 * layer of model 1 starting with its name. The corner cell names both models.
 * Undefined (null) cells are empty. A layer compared through a view other
 * than the default `flatten` reads `name [view]` (model1Views/model2Views;
 * results without them are all flatten).
 */
export function resultToCsv(result: CKAResult): string {
  const { model1Views, model2Views } = result as { model1Views?: string[]; model2Views?: string[] };
  const named = (layers: string[], views: string[] | undefined): string[] =>
    layers.map((name, i) => {
      const view = views?.[i] ?? 'flatten';
      return view === 'flatten' ? name : `${name} [${view}]`;
    });
  const header = [`${result.model1Name} \\ ${result.model2Name}`, ...named(result.model2Layers, model2Views)];
  const rowNames = named(result.model1Layers, model1Views);
  const lines = [header.map(csvField).join(',')];
  primaryMatrix(result).forEach((row, i) => {
    const cells = row.map((value) => (value === null ? '' : String(value)));
    lines.push([csvField(rowNames[i] ?? ''), ...cells].join(','));
  });
  return `${lines.join('\r\n')}\r\n`;
}

export { writeFileAtomic } from '../util/atomic-file';

/** Lays out rows of cells as aligned columns; `right` marks right-aligned columns. */
export function table(rows: readonly (readonly string[])[], right: readonly number[] = []): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (right.includes(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
