// The options of the measures beyond linear CKA (docs/measures.md): which
// measures, the RBF threshold and user-fixed σ per layer pattern, checked and
// resolved into what the native engine takes.
import { layerMatcher, patternToRegExp, unmatchedLayerKey } from '../model/layer-patterns';
import type { NativeLayer } from '../native/binding';
import { describe, invalidArgType, invalidArgValue } from '../util/errors';
import type { Measure } from './types';

/** Every measure id, in the order the docs list them. */
export const MEASURES: readonly Measure[] = [
  'cka',
  'rbf_cka',
  'dcor',
  'linear_cka_biased',
  'rbf_cka_biased',
  'cca_rho',
  'cca_r2',
  'svcca',
  'procrustes',
  'rsa',
  'mknn',
];

/** The measures the streaming (minibatch) mode computes; the others need `fullBatch`. */
export const STREAMING_MEASURES: readonly Measure[] = ['cka', 'rbf_cka', 'dcor'];

/**
 * @internal options.measures, checked: a non-empty list of distinct ids;
 * default `['cka']`. Without `fullBatch`, only the streaming measures.
 */
export function measureList(value: unknown, name: string, fullBatch = false): Measure[] {
  if (value === undefined) return ['cka'];
  if (!Array.isArray(value)) throw invalidArgType(`Expected ${name} to be an array but received ${describe(value)}`);
  const allowed = fullBatch ? MEASURES : STREAMING_MEASURES;
  if (value.length === 0) {
    throw invalidArgValue(`${name} is an empty list: name at least one of ${allowed.join(', ')}`);
  }
  const seen = new Set<string>();
  for (const item of value as unknown[]) {
    if (typeof item !== 'string' || !(MEASURES as readonly string[]).includes(item)) {
      throw invalidArgValue(`Expected ${name} to hold ${allowed.join(', ')} but received ${describe(item)}`);
    }
    if (!(allowed as readonly string[]).includes(item)) {
      throw invalidArgValue(
        `${name} names '${item}', a full-batch measure: set fullBatch (--full-batch N) to compute it on one ` +
          `evaluation set; the streaming mode computes ${STREAMING_MEASURES.join(', ')}`,
      );
    }
    if (seen.has(item)) throw invalidArgValue(`${name} names '${item}' twice`);
    seen.add(item);
  }
  return [...(value as Measure[])];
}

/** @internal options.rbfThreshold, checked: a positive finite number; default 0.5. */
export function rbfThreshold(value: unknown, name: string): number {
  if (value === undefined) return 0.5;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw invalidArgValue(`Expected ${name} to be a positive finite number but received ${describe(value)}`);
  }
  return value;
}

/** @internal A σ map ({ pattern: σ }), checked: every σ a positive finite number. */
export function sigmaMap(value: unknown, name: string): Array<[string, number]> {
  if (value === undefined) return [];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgType(`Expected ${name} to be an object of layer pattern: sigma but received ${describe(value)}`);
  }
  return Object.entries(value as Record<string, unknown>).map(([pattern, sigma]) => {
    if (typeof sigma !== 'number' || !Number.isFinite(sigma) || sigma <= 0) {
      throw invalidArgValue(
        `Expected ${name}['${pattern}'] to be a positive finite sigma but received ${describe(sigma)}`,
      );
    }
    return [pattern, sigma];
  });
}

/**
 * @internal σ per layer of a model (null: from the data): the first entry
 * whose pattern (or plain name, matched exactly) matches the layer's name.
 */
export function sigmasPerLayer(
  entries: Array<[string, number]>,
  layers: readonly NativeLayer[],
  option: string,
  modelLabel: string,
): Array<number | null> {
  const compiled = entries.map(([pattern, sigma]) => {
    const matches = layerMatcher(pattern);
    if (!layers.some((layer) => matches(layer.name))) throw unmatchedLayerKey(pattern, option, modelLabel);
    return [matches, sigma] as const;
  });
  return layers.map((layer) => compiled.find(([matches]) => matches(layer.name))?.[1] ?? null);
}

type Matrix = Array<Array<number | null>>;

/**
 * @internal The matrix a single-matrix reader shows: `cka` when present,
 * else the first measured one (a result of `measures: ['dcor']`, say).
 */
export function primaryMatrix(result: { cka?: Matrix; measures?: { [id: string]: Matrix } }): Matrix {
  return result.cka ?? Object.values(result.measures ?? {})[0] ?? [];
}

/** @internal Every matrix of a result by measure id; older files have only `cka`. */
export function resultMeasures(result: { cka?: Matrix; measures?: { [id: string]: Matrix } }): {
  [id: string]: Matrix;
} {
  return result.measures ?? (result.cka ? { cka: result.cka } : {});
}

/** The display name of a measure id, for titles and summaries. */
export const MEASURE_NAMES: Readonly<Record<string, string>> = {
  cka: 'linear CKA',
  rbf_cka: 'RBF CKA',
  dcor: 'distance correlation',
  linear_cka_biased: 'biased linear CKA',
  rbf_cka_biased: 'biased RBF CKA',
  cca_rho: 'mean canonical correlation',
  cca_r2: 'mean squared canonical correlation',
  svcca: 'SVCCA',
  procrustes: 'Procrustes similarity',
  rsa: 'RSA (Spearman)',
  mknn: 'mutual k-NN',
};

/** Why a null cell is null, in words (report tooltips). */
export const NULL_REASONS: Readonly<Record<string, string>> = {
  constant: 'a layer does not vary over the data',
  rank_deficient: 'layer fills the sample space: d >= N - 1',
  no_sigma: 'the median squared distance is 0, so σ is undefined',
  zero_norm: 'a sample has a zero feature vector, so no cosine',
};

/**
 * @internal The file of each measure when one option (--csv, --plot) writes
 * several: the first measure gets `file` itself, each other one `file` with
 * `.ID` before its extension (`heatmap.svg`, `heatmap.rbf_cka.svg`).
 */
export function measureFiles(file: string, ids: readonly string[]): Array<[string, string]> {
  const dot = file.lastIndexOf('.');
  const slash = Math.max(file.lastIndexOf('/'), file.lastIndexOf('\\'));
  const [stem, ext] = dot > slash + 1 ? [file.slice(0, dot), file.slice(dot)] : [file, ''];
  return ids.map((id, i) => [id, i === 0 ? file : `${stem}.${id}${ext}`]);
}
