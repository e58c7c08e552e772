// Checks that a value (e.g. parsed from results.json) is what CKA.export() returns.
import type { CKAResult } from '../compare/types';
import { describe, ErrorCodes, makeError } from '../util/errors';

function fail(source: string, what: string): never {
  throw makeError(TypeError, ErrorCodes.INVALID_RESULT, `Invalid CKA result in ${source}: ${what}`);
}

function stringField(record: Record<string, unknown>, key: string, source: string): string {
  const value = record[key];
  if (typeof value !== 'string') fail(source, `expected a string for ${key} but received ${describe(value)}`);
  return value;
}

function layerNames(record: Record<string, unknown>, key: string, source: string): string[] {
  const value = record[key];
  if (!Array.isArray(value))
    fail(source, `expected an array of layer names for ${key} but received ${describe(value)}`);
  if (value.length === 0) fail(source, `${key} is empty; expected at least one layer`);
  value.forEach((name: unknown, i) => {
    if (typeof name !== 'string') fail(source, `expected a string for ${key}[${i}] but received ${describe(name)}`);
  });
  return [...(value as string[])];
}

/** A views array aligned with `count` rows; a file from before views existed has none: all 'flatten'. */
function viewNames(record: Record<string, unknown>, key: string, count: number, source: string): string[] {
  const value = record[key];
  if (value === undefined) return new Array<string>(count).fill('flatten');
  if (!Array.isArray(value) || value.length !== count || !value.every((view) => typeof view === 'string')) {
    fail(source, `expected ${key} to be an array of ${count} view names but received ${describe(value)}`);
  }
  return [...(value as string[])];
}

function countField(record: Record<string, unknown>, key: string, source: string): number {
  const value = record[key];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    fail(source, `expected a non-negative integer for ${key} but received ${describe(value)}`);
  }
  return value;
}

/**
 * Returns `value` as a {@link CKAResult} (a copy holding only its fields; extra keys such as
 * the CLI's `cli` are left out), or throws a TypeError with code `ERR_INVALID_RESULT` saying
 * what is wrong. `source` names where the value came from, e.g. a file path.
 */
export function validateResult(value: unknown, source = 'result'): CKAResult {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(source, `expected an object but received ${describe(value)}`);
  }
  const record = value as Record<string, unknown>;
  const model1Name = stringField(record, 'model1Name', source);
  const model2Name = stringField(record, 'model2Name', source);
  const dataset1Name = stringField(record, 'dataset1Name', source);
  const dataset2Name = stringField(record, 'dataset2Name', source);
  const model1Layers = layerNames(record, 'model1Layers', source);
  const model2Layers = layerNames(record, 'model2Layers', source);
  const rows = model1Layers.length;
  const cols = model2Layers.length;
  // A result of measures without 'cka' (e.g. ['dcor']): its first matrix.
  const measures = record.measures as Record<string, unknown> | undefined;
  const matrix = record.cka ?? (measures && typeof measures === 'object' ? Object.values(measures)[0] : undefined);
  if (!Array.isArray(matrix)) fail(source, `expected an array of rows for cka but received ${describe(matrix)}`);
  if (matrix.length !== rows) {
    fail(source, `cka has ${matrix.length} rows but model1Layers has ${rows} layers`);
  }
  const cka = matrix.map((row: unknown, i): Array<number | null> => {
    if (!Array.isArray(row)) fail(source, `expected an array for cka[${i}] but received ${describe(row)}`);
    if (row.length !== cols) {
      fail(source, `cka[${i}] has ${row.length} values but model2Layers has ${cols} layers`);
    }
    return row.map((cell: unknown, j) => {
      if (cell === null) return null;
      if (typeof cell !== 'number' || !Number.isFinite(cell)) {
        fail(source, `expected a finite number or null for cka[${i}][${j}] but received ${describe(cell)}`);
      }
      return cell;
    });
  });
  const samples = countField(record, 'samples', source);
  const batches = countField(record, 'batches', source);
  const model1Views = viewNames(record, 'model1Views', rows, source);
  const model2Views = viewNames(record, 'model2Views', cols, source);
  return {
    model1Name,
    model2Name,
    model1Layers,
    model2Layers,
    model1Views,
    model2Views,
    dataset1Name,
    dataset2Name,
    cka,
    samples,
    batches,
  };
}
