// Input checks with messages that say what was expected and what came.
import { describe, invalidArgType, invalidArgValue } from './errors';

export function requireString(value: unknown, name: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw invalidArgType(`Expected a non-empty string for ${name} but received ${describe(value)}`);
  }
  return value;
}

export function optionalString(value: unknown, name: string): string | undefined {
  return value === undefined ? undefined : requireString(value, name);
}

export function optionalStringArray(value: unknown, name: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string' && item.length > 0)) {
    throw invalidArgType(`Expected an array of layer names for ${name} but received ${describe(value)}`);
  }
  return [...value];
}

export function optionalObject(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgType(`Expected an object for ${name} but received ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

export function optionalFunction<T extends (...args: never[]) => unknown>(value: unknown, name: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function')
    throw invalidArgType(`Expected a function for ${name} but received ${describe(value)}`);
  return value as T;
}

export function optionalOneOf<T extends string>(value: unknown, allowed: readonly T[], name: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    throw invalidArgValue(
      `Expected one of ${allowed.map((a) => `'${a}'`).join(', ')} for ${name} but received ${describe(value)}`,
    );
  }
  return value as T;
}

/** An integer >= `min`, or undefined. */
export function optionalInteger(value: unknown, name: string, min = 0): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw invalidArgType(`Expected an integer for ${name} but received ${describe(value)}`);
  }
  if (value < min) throw invalidArgValue(`Expected an integer >= ${min} for ${name} but received ${value}`);
  return value;
}

export function optionalBoolean(value: unknown, name: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean')
    throw invalidArgType(`Expected a boolean for ${name} but received ${describe(value)}`);
  return value;
}
