// For each layer of model 1, the layer of model 2 it resembles most.
import type { CKAResult } from '../compare/types';
import { primaryMatrix } from '../compare/measures';

export interface BestMatch {
  /** Row index: the layer of model 1. */
  row: number;
  layer1: string;
  /** Column index of the best layer of model 2, or null when the whole row is undefined. */
  col: number | null;
  layer2: string | null;
  /** Its CKA, or null when the whole row is undefined. */
  cka: number | null;
}

/** The highest CKA in each row (the first one on ties); a row with no defined value gets nulls. */
export function bestMatches(result: CKAResult): BestMatch[] {
  return result.model1Layers.map((layer1, row) => {
    let col: number | null = null;
    let cka: number | null = null;
    (primaryMatrix(result)[row] ?? []).forEach((value, j) => {
      if (value !== null && (cka === null || value > cka)) {
        cka = value;
        col = j;
      }
    });
    return { row, layer1, col, layer2: col === null ? null : (result.model2Layers[col] ?? null), cka };
  });
}
