// The one TORCH_CKA_LAYER_LEFT_OUT message per model: layers that a default
// selection (every submodule) left out, grouped by why, named compactly.
import type { LeftOutLayer } from './types';

/** Names or patterns shown in a TORCH_CKA_LAYER_LEFT_OUT message; the other layers are counted ("and N more"). */
const LEFT_OUT_SHOWN = 12;

/** The heading of a group of left-out layers in the message. */
function reasonGroup(layer: LeftOutLayer): string {
  switch (layer.code) {
    case 'ERR_LAYER_NOT_RUN':
      return layer.reason.replace(/^it /, '');
    case 'ERR_NO_TENSOR_OUTPUT':
      return 'output holds no tensor';
    case 'ERR_LAYER_SHAPE':
      return 'output has no batch dimension';
    default:
      return layer.reason;
  }
}

/**
 * Layer names, compactly: names differing only in numeric segments become one
 * pattern with a count (`encoder.layers.*.linear1 (2)`), and consecutive ones
 * under one parent share it (`encoder.layers.*.{linear1,linear2}`). Shows at
 * most `budget` names or patterns; returns how many layers it left unnamed.
 */
function compactNames(names: readonly string[], budget: number): { text: string; items: number; hidden: number } {
  const patterns = new Map<string, string[]>();
  for (const name of names) {
    const key = name
      .split('.')
      .map((segment) => (/^\d+$/.test(segment) ? '*' : segment))
      .join('.');
    const same = patterns.get(key);
    if (same) same.push(name);
    else patterns.set(key, [name]);
  }
  const runs: Array<{ prefix: string[]; members: Array<{ suffix: string; count: number }> }> = [];
  for (const [key, matching] of patterns) {
    const count = matching.length;
    const segments = (count > 1 ? key : (matching[0] as string)).split('.');
    const last = runs[runs.length - 1];
    if (
      last &&
      last.prefix.length > 0 &&
      segments.length > last.prefix.length &&
      last.prefix.every((segment, i) => segments[i] === segment)
    ) {
      last.members.push({ suffix: segments.slice(last.prefix.length).join('.'), count });
    } else {
      runs.push({
        prefix: segments.slice(0, -1),
        members: [{ suffix: segments[segments.length - 1] as string, count }],
      });
    }
  }
  const parts: string[] = [];
  const most = Math.max(1, budget);
  let left = most;
  let hidden = 0;
  for (const run of runs) {
    const shown = run.members.slice(0, left);
    left -= shown.length;
    for (const member of run.members.slice(shown.length)) hidden += member.count;
    if (shown.length === 0) continue;
    const head = run.prefix.length > 0 ? `${run.prefix.join('.')}.` : '';
    const counts = new Set(shown.map((member) => member.count));
    const times = (count: number): string => (count > 1 ? ` (${count})` : '');
    if (shown.length === 1) {
      const only = shown[0] as { suffix: string; count: number };
      parts.push(`${head}${only.suffix}${times(only.count)}`);
    } else if (counts.size === 1) {
      const count = shown[0]?.count ?? 1;
      parts.push(`${head}{${shown.map((m) => m.suffix).join(',')}}${count > 1 ? ` (${count} each)` : ''}`);
    } else {
      parts.push(`${head}{${shown.map((m) => `${m.suffix}${times(m.count)}`).join(',')}}`);
    }
  }
  return { text: parts.join(', '), items: most - left, hidden };
}

/**
 * The one TORCH_CKA_LAYER_LEFT_OUT message for a model: how many layers, and
 * per reason their names, compactly, at most LEFT_OUT_SHOWN of them.
 */
export function leftOutMessage(label: string, layers: readonly LeftOutLayer[]): string {
  const groups = new Map<string, string[]>();
  for (const layer of layers) {
    const group = reasonGroup(layer);
    const names = groups.get(group);
    if (names) names.push(layer.name);
    else groups.set(group, [layer.name]);
  }
  // Each reason names at least one layer; together they name at most LEFT_OUT_SHOWN.
  let left = LEFT_OUT_SHOWN;
  const sections: string[] = [];
  for (const [group, names] of groups) {
    const compact = compactNames(names, left);
    left = Math.max(0, left - compact.items);
    const more = compact.hidden > 0 ? `, and ${compact.hidden} more` : '';
    sections.push(`${group} (${names.length}): ${compact.text}${more}`);
  }
  const count = layers.length === 1 ? '1 layer' : `${layers.length} layers`;
  const verb = layers.length === 1 ? 'is' : 'are';
  return `${count} of model '${label}' ${verb} left out of the comparison; ${sections.join('; ')}`;
}
