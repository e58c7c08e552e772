// What the CLI writes: results.json, the CSV matrix, and text tables.

import type { CKAResult } from '../compare/types';
import { primaryMatrix } from '../compare/measures';

/** One CSV field, quoted when it holds a comma, quote or line break (RFC 4180). */
const csvField = (text: string): string => (/[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text);

/**
 * The matrix as CSV: a header row with model 2's layers, then one row per
 * layer of model 1 starting with its name. The corner cell names both models.
 * Undefined (null) cells are empty.
 */
export function resultToCsv(result: CKAResult): string {
  const header = [`${result.model1Name} \\ ${result.model2Name}`, ...result.model2Layers];
  const lines = [header.map(csvField).join(',')];
  primaryMatrix(result).forEach((row, i) => {
    const cells = row.map((value) => (value === null ? '' : String(value)));
    lines.push([csvField(result.model1Layers[i] ?? ''), ...cells].join(','));
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
