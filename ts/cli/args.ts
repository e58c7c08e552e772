// Command-line parsing on node:util's parseArgs, with help text made from the
// same option table, and values checked into numbers, lists and choices.
import { parseArgs } from 'node:util';

import { ErrorCodes, makeError } from '../util/errors';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Shown in --help after the option, e.g. `N` or `PATH`. */
  value?: string;
  description: string;
  /** The option may be given several times; its values come as a string[]. */
  multiple?: boolean;
}

export interface CommandSpec {
  name: string;
  /** One line: `torch-cka NAME ...`. */
  usage: string;
  summary: string;
  positionals: { min: number; max: number };
  options: Record<string, OptionSpec>;
  /** Extra paragraphs after the option list. */
  notes?: string;
}

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface Parsed {
  values: Values;
  positionals: string[];
}

export const usageError = (message: string): Error => makeError(Error, ErrorCodes.USAGE, message);

const HELP: OptionSpec = { type: 'boolean', short: 'h', description: 'show this help' };

/** Parses argv (the part after the command name) against a command's options. */
export function parse(argv: readonly string[], spec: CommandSpec): Parsed {
  const options = { ...spec.options, help: HELP };
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: Object.fromEntries(
        Object.entries(options).map(([name, o]) => [
          name,
          {
            type: o.type,
            ...(o.short ? { short: o.short } : {}),
            ...(o.multiple ? { multiple: true } : {}),
          },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    // parseArgs' messages are clear but long; keep their first sentence.
    const message = (error as Error).message.split('. ')[0]?.replace(/\.$/, '') ?? String(error);
    throw usageError(`${message} (see torch-cka ${spec.name} --help)`);
  }
  const values = parsed.values as Values;
  if (values.help) return { values, positionals: parsed.positionals };
  const count = parsed.positionals.length;
  if (count < spec.positionals.min || count > spec.positionals.max) {
    const expected =
      spec.positionals.min === spec.positionals.max
        ? `${spec.positionals.min}`
        : `${spec.positionals.min} to ${spec.positionals.max}`;
    throw usageError(
      `torch-cka ${spec.name} takes ${expected} argument(s) but received ${count}` +
        `${count ? ` (${parsed.positionals.join(' ')})` : ''}; usage: ${spec.usage}`,
    );
  }
  return { values, positionals: parsed.positionals };
}

/** The --help text of a command. */
export function helpText(spec: CommandSpec): string {
  const options = { ...spec.options, help: HELP };
  const rows = Object.entries(options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.value ? ` ${o.value}` : ''}`;
    return [flag, o.description] as const;
  });
  const width = Math.max(...rows.map(([flag]) => flag.length));
  const lines = [
    `Usage: ${spec.usage}`,
    '',
    spec.summary,
    '',
    'Options:',
    ...rows.map(([flag, text]) => `  ${flag.padEnd(width)}  ${text}`),
  ];
  if (spec.notes) lines.push('', spec.notes);
  return `${lines.join('\n')}\n`;
}

export function stringValue(values: Values, name: string): string | undefined {
  const value = values[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0) throw usageError(`--${name} needs a value`);
  return value;
}

export function integerValue(values: Values, name: string, min: number): number | undefined {
  const text = stringValue(values, name);
  if (text === undefined) return undefined;
  if (!/^[+-]?\d+$/.test(text.trim()) || Number(text) < min || !Number.isSafeInteger(Number(text))) {
    throw usageError(`Expected an integer >= ${min} for --${name} but received '${text}'`);
  }
  return Number(text);
}

/**
 * A repeatable `--name KEY=VALUE` option as [key, value] pairs in the order
 * given (the key may itself hold no `=`; the value is after the first one).
 * `check` turns a value into its checked form or returns null, and `expected`
 * says in words what it should be.
 */
export function pairsValue<T>(
  values: Values,
  name: string,
  check: (value: string) => T | null,
  expected: string,
): Array<[string, T]> {
  const raw = values[name];
  if (raw === undefined) return [];
  const items = Array.isArray(raw) ? raw : [raw];
  return items.map((item): [string, T] => {
    if (typeof item !== 'string') throw usageError(`--${name} needs a value`);
    const at = item.indexOf('=');
    const key = at > 0 ? item.slice(0, at).trim() : '';
    const text = at > 0 ? item.slice(at + 1).trim() : '';
    if (key === '' || text === '') {
      throw usageError(`Expected --${name} PATTERN=${expected} but received '--${name} ${item}'`);
    }
    const checked = check(text);
    if (checked === null) {
      throw usageError(
        `Expected --${name} PATTERN=${expected} but received '--${name} ${item}' ('${text}' is not one)`,
      );
    }
    return [key, checked];
  });
}

/** A comma-separated list; empty items are an error. */
export function listValue(values: Values, name: string): string[] | undefined {
  const text = stringValue(values, name);
  if (text === undefined) return undefined;
  const items = text.split(',').map((item) => item.trim());
  if (items.some((item) => item.length === 0)) {
    throw usageError(`--${name} has an empty entry in '${text}'; give names separated by commas`);
  }
  return items;
}

export function choiceValue<T extends string>(values: Values, name: string, choices: readonly T[]): T | undefined {
  const text = stringValue(values, name);
  if (text === undefined) return undefined;
  if (!choices.includes(text as T)) {
    throw usageError(`Expected one of ${choices.join(', ')} for --${name} but received '${text}'`);
  }
  return text as T;
}

/** `224` or `224x256` (height x width). */
export function sizeValue(values: Values, name: string): number | [number, number] | undefined {
  const text = stringValue(values, name);
  if (text === undefined) return undefined;
  const match = /^(\d+)(?:[x,](\d+))?$/i.exec(text.trim());
  const h = Number(match?.[1]);
  const w = match?.[2] === undefined ? undefined : Number(match[2]);
  if (!match || h < 1 || (w !== undefined && w < 1)) {
    throw usageError(`Expected a size like 224 or 224x256 (height x width) for --${name} but received '${text}'`);
  }
  return w === undefined ? h : [h, w];
}

const BYTE_UNITS: Readonly<Record<string, number>> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/**
 * A byte count: `8589934592`, or a number with a K, M, G or T suffix in
 * base 1024 (`8G`, `1.5g`, `512MiB`, `512MB`); null when it is none (or 0).
 */
export function parseByteSize(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?|\.\d+)\s*(?:([KMGT])(?:i?B)?|B)?$/i.exec(text.trim());
  if (!match) return null;
  const bytes = Math.floor(Number(match[1]) * (BYTE_UNITS[(match[2] ?? '').toUpperCase()] ?? Number.NaN));
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : null;
}

/** A `--name SIZE` option in bytes (see parseByteSize). */
export function byteSizeValue(values: Values, name: string): number | undefined {
  const text = stringValue(values, name);
  if (text === undefined) return undefined;
  const bytes = parseByteSize(text);
  if (bytes === null) {
    throw usageError(
      `Expected a positive size in bytes, or with a K, M, G or T suffix (base 1024, e.g. 8G), for --${name} but received '${text}'`,
    );
  }
  return bytes;
}

/** A `--name X` option: a finite number within [min, max] (`open` excludes min). */
export function numberValue(
  values: Values,
  name: string,
  range: { min: number; max?: number; open?: boolean },
  expected: string,
): number | undefined {
  const text = stringValue(values, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  const low = range.open ? value > range.min : value >= range.min;
  if (text.trim() === '' || !Number.isFinite(value) || !low || (range.max !== undefined && value > range.max)) {
    throw usageError(`Expected ${expected} for --${name} but received '${text}'`);
  }
  return value;
}
