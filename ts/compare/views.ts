// Feature views (issue 15): what a layer's feature is before its Gram matrix
// is made. The names are parsed and checked here, the patterns resolved
// against the model's layers; native code applies the view inside the tap.
import { isPattern, layerMatcher, patternToRegExp, unmatchedLayerKey } from '../model/layer-patterns';
import { describe, ErrorCodes, invalidArgType, makeError } from '../util/errors';

/**
 * A layer's feature view:
 * - `flatten` (default): every dimension after the batch one;
 * - `spatial-mean`: `(N, C, ...)` → the mean over the dimensions after the
 *   channel one (global average pooling); a 2-D `(N, C)` output is used as it is;
 * - `token-mean`: `(N, T, D)` → the mean over the T tokens;
 * - `token:K`: `(N, T, D)` → token K (0 = the first / class token; negative
 *   counts from the end, `token:-1` is the last).
 *
 * A view that does not fit a layer's output fails at the first batch with
 * ERR_VIEW_SHAPE.
 */
export type View = 'flatten' | 'spatial-mean' | 'token-mean' | `token:${number}`;

/** Views by layer: `{ [layerPattern]: view }`; the same patterns as the layer lists, the first match wins. */
export type ViewMap = Readonly<Record<string, View>>;

/** The default view. */
export const DEFAULT_VIEW: View = 'flatten';

/** Checks a view's name; returns it in its canonical spelling (`token:+1` → `token:1`), or null if it is not one. */
export function parseView(text: string): View | null {
  if (text === 'flatten' || text === 'spatial-mean' || text === 'token-mean') return text;
  const token = /^token:([+-]?\d{1,9})$/.exec(text);
  if (token) return `token:${Number(token[1])}`;
  return null;
}

const VIEW_NAMES = "'flatten', 'spatial-mean', 'token-mean' or 'token:K' (K an integer, negative from the end)";

/** Checks a `{ [layerPattern]: view }` option (model1Views, model2Views); ERR_INVALID_ARG for anything else. */
export function optionalViews(value: unknown, name: string): Array<[string, View]> {
  if (value === undefined) return [];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgType(`Expected ${name} to be an object of { layerPattern: view } but received ${describe(value)}`);
  }
  const out: Array<[string, View]> = [];
  for (const [pattern, view] of Object.entries(value as Record<string, unknown>)) {
    const parsed = typeof view === 'string' ? parseView(view) : null;
    if (parsed === null) {
      throw makeError(
        RangeError,
        ErrorCodes.INVALID_ARG,
        `Expected ${name}['${pattern}'] to be ${VIEW_NAMES} but received ${describe(view)}`,
      );
    }
    if (pattern === '') {
      throw makeError(RangeError, ErrorCodes.INVALID_ARG, `${name} has an empty layer pattern`);
    }
    if (isPattern(pattern)) patternToRegExp(pattern); // a bad pattern fails here
    out.push([pattern, parsed]);
  }
  return out;
}

/**
 * Each layer's view, in the order of `layerNames` (the model's layers()):
 * the first entry whose pattern matches (a plain name matches itself
 * exactly), else `flatten`. A trailing `#k` on a pattern is ignored: a view
 * belongs to the module, so all its calls share it. An entry that matches no
 * layer is ERR_UNKNOWN_LAYER (a misspelt name would otherwise leave its layer
 * flattened without a word).
 */
export function resolveViews(
  entries: ReadonlyArray<[string, View]>,
  layerNames: readonly string[],
  option: string,
  modelLabel: string,
): View[] {
  const matchers = entries.map(([pattern, view]): [(name: string) => boolean, View] => {
    const matches = layerMatcher(pattern);
    if (!layerNames.some(matches)) throw unmatchedLayerKey(pattern, option, modelLabel);
    return [matches, view];
  });
  return layerNames.map((name) => matchers.find(([matches]) => matches(name))?.[1] ?? DEFAULT_VIEW);
}

/** The views of rows named `layer` or `layer#k`, from the per-layer views. */
export function rowViews(rows: readonly string[], layerNames: readonly string[], views: readonly View[]): View[] {
  const byName = new Map(layerNames.map((name, i) => [name, views[i] ?? DEFAULT_VIEW]));
  return rows.map((row) => byName.get(row) ?? byName.get(row.replace(/#\d+$/, '')) ?? DEFAULT_VIEW);
}

/** The non-default views by layer name, for checkpoint identities; undefined when every layer is flattened. */
export function viewSettings(layerNames: readonly string[], views: readonly View[]): Record<string, View> | undefined {
  const out: Record<string, View> = {};
  layerNames.forEach((name, i) => {
    const view = views[i] ?? DEFAULT_VIEW;
    if (view !== DEFAULT_VIEW) out[name] = view;
  });
  return Object.keys(out).length > 0 ? out : undefined;
}
