// Layer lists with glob patterns: `layer1.*`, `layer*.?.relu`, `**.conv1`.
import { ErrorCodes, makeError } from '../util/errors';

/** True when a layer list entry is a pattern rather than a plain name. */
export const isPattern = (entry: string): boolean => /[*?[]/.test(entry);

/**
 * Compiles a glob over dotted layer names: `*` matches within one name
 * segment (no dot), `**` matches across segments, `?` matches one character
 * other than a dot, `[abc]` / `[0-9]` / `[!x]` a character class.
 */
export function patternToRegExp(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i += 1) {
    const ch = pattern[i] as string;
    if (ch === '*') {
      if (pattern[i + 1] === '*') {
        // `**.` also matches nothing, so `**.conv1` finds a top-level conv1.
        if (pattern[i + 2] === '.') {
          source += '(?:.*\\.)?';
          i += 2;
        } else {
          source += '.*';
          i += 1;
        }
      } else {
        source += '[^.]*';
      }
    } else if (ch === '?') {
      source += '[^.]';
    } else if (ch === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end === -1) {
        throw makeError(
          RangeError,
          ErrorCodes.INVALID_ARG,
          `Layer pattern '${pattern}' has a '[' without a closing ']'`,
        );
      }
      let body = pattern.slice(i + 1, end);
      const negate = body.startsWith('!') || body.startsWith('^');
      if (negate) body = body.slice(1);
      source += `[${negate ? '^' : ''}${body.replace(/[\\\]]/g, '\\$&')}]`;
      i = end;
    } else {
      source += ch.replace(/[.+^${}()|\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${source}$`);
}

/** A per-layer option's key as a test on layer names: a pattern, or a plain name (a `#k` suffix is ignored). */
export function layerMatcher(pattern: string): (name: string) => boolean {
  const bare = pattern.replace(/#\d+$/, '');
  if (!isPattern(bare)) return (name) => name === bare;
  const regexp = patternToRegExp(bare);
  return (name) => regexp.test(name);
}

/** ERR_UNKNOWN_LAYER for a per-layer option's key (a view, a σ) that matches no layer. */
export function unmatchedLayerKey(pattern: string, option: string, where: string): Error {
  return makeError(
    Error,
    ErrorCodes.UNKNOWN_LAYER,
    `The ${option} entry '${pattern}' matches no layer of ${where}` +
      ' (* stays within one dotted segment, ** crosses them; list the layers with `torch-cka layers`)',
  );
}

export interface PatternLayer {
  name: string;
  /** False for containers without forward (ModuleList, ModuleDict): patterns skip them. */
  callable?: boolean;
}

/**
 * Expands the patterns of a layer list against a model's layers, in the
 * list's order and, within one pattern, in definition order. Plain names pass
 * through unchanged (the engine checks them). A `#k` suffix on a pattern picks
 * the k-th call of every match. A layer matched by several patterns, or both
 * named and matched, appears once. A pattern that matches nothing is
 * ERR_UNKNOWN_LAYER.
 */
export function expandLayerPatterns(
  entries: readonly string[],
  layers: readonly PatternLayer[],
  modelLabel: string,
): string[] {
  if (!entries.some(isPattern)) return [...entries];
  const named = new Set(entries.filter((entry) => !isPattern(entry)));
  const seen = new Set<string>();
  const out: string[] = [];
  for (const entry of entries) {
    if (!isPattern(entry)) {
      out.push(entry);
      continue;
    }
    const hash = /#\d+$/.exec(entry);
    const suffix = hash ? hash[0] : '';
    const regexp = patternToRegExp(hash ? entry.slice(0, hash.index) : entry);
    const matches = layers.filter((layer) => layer.callable !== false && regexp.test(layer.name));
    if (matches.length === 0) {
      throw makeError(
        Error,
        ErrorCodes.UNKNOWN_LAYER,
        `The layer pattern '${entry}' matches no submodule of ${modelLabel}` +
          ` (* stays within one dotted segment, ** crosses them; list the layers with \`torch-cka layers\`)`,
      );
    }
    for (const { name } of matches) {
      const full = name + suffix;
      if (seen.has(full) || named.has(full)) continue;
      seen.add(full);
      out.push(full);
    }
  }
  return out;
}
