// Argument errors shaped like Node's own (ERR_INVALID_ARG_TYPE /
// ERR_INVALID_ARG_VALUE / ERR_OUT_OF_RANGE), thrown synchronously before any
// I/O. The HTTP layer keeps its own copies so that it depends on the core's
// public API only.

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `type string (${JSON.stringify(v.length > 28 ? v.slice(0, 25) + '...' : v)})`;
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : `type number (${v})`;
  if (typeof v === 'function') return `function ${v.name || '<anonymous>'}`;
  if (typeof v === 'object') return `an instance of ${(v as object).constructor?.name ?? 'Object'}`;
  return `type ${typeof v} (${String(v)})`;
}

export function invalidArgType(name: string, expected: string, actual: unknown): TypeError & { code: string } {
  return Object.assign(new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`), { code: 'ERR_INVALID_ARG_TYPE' });
}

export function invalidArgValue(name: string, actual: unknown, reason: string): TypeError & { code: string } {
  return Object.assign(new TypeError(`The argument '${name}' ${reason}. Received ${describe(actual)}`), { code: 'ERR_INVALID_ARG_VALUE' });
}

export function outOfRange(name: string, range: string, actual: unknown): RangeError & { code: string } {
  return Object.assign(new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${describe(actual)}`), { code: 'ERR_OUT_OF_RANGE' });
}
