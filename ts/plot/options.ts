// Option checks shared by the plot and report renderers.
import { describe, invalidArgType, invalidArgValue } from '../util/errors';

/** A finite number > 0, or undefined. */
export function optionalPositiveNumber(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw invalidArgType(`Expected a positive number for ${name} but received ${describe(value)}`);
  }
  if (!Number.isFinite(value) || value <= 0) {
    throw invalidArgValue(`Expected a positive number for ${name} but received ${value}`);
  }
  return value;
}

/** A string (possibly empty), or undefined. */
export function optionalText(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalidArgType(`Expected a string for ${name} but received ${describe(value)}`);
  return value;
}
