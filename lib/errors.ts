/**
 * Errors thrown or rejected by ssd-kernels.
 *
 * Wrong JavaScript types raise TypeError, out-of-range sizes and values RangeError; everything
 * else (shapes that disagree, an unavailable device, failures inside the native code) raises an
 * SsdError whose `code` says what went wrong.
 */
export type SsdErrorCode =
  | 'ERR_SSD_SHAPE' // sizes that disagree across inputs
  | 'ERR_SSD_VALUE' // a value the function is not defined for (non-finite A, decreasing seqIdx)
  | 'ERR_SSD_OPTION' // an unknown option name
  | 'ERR_SSD_INVALID_ARGUMENT' // the native code's own re-check of sizes failed
  | 'ERR_SSD_DEVICE' // the requested device is not available
  | 'ERR_SSD_DISPOSED' // a tensor used after dispose()
  | 'ERR_SSD_DETACHED' // an output's ArrayBuffer was detached (transferred) while an asynchronous call ran
  | 'ERR_SSD_OUT_OF_MEMORY' // an allocation failed
  | 'ERR_SSD_UNSUPPORTED' // a size or option the backend does not implement
  | 'ERR_SSD_CUDA' // a CUDA call failed
  | 'ERR_SSD_NATIVE' // the native addon could not be loaded
  | 'ERR_SSD_INTERNAL';

export class SsdError extends Error {
  readonly code: SsdErrorCode;

  constructor(code: SsdErrorCode, message: string) {
    super(message);
    this.name = 'SsdError';
    this.code = code;
  }
}

/** Describes a value for an error message: its type, and for arrays their class and length. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return `${typeof value} ${String(value)}`;
  }
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) {
    const length = (value as unknown as { length?: number }).length;
    return `a ${value.constructor.name}${length === undefined ? '' : ` of length ${length}`}`;
  }
  if (typeof value === 'function') return 'a function';
  const name = (value as object).constructor?.name;
  return name && name !== 'Object' ? `an instance of ${name}` : 'an object';
}

/** "Expected <what> for <name> but received <value>" as a TypeError. */
export function typeError(name: string, expected: string, value: unknown): TypeError {
  return new TypeError(`Expected ${expected} for ${name} but received ${describe(value)}`);
}

/** "Expected <what> for <name> but received <what came>" as a RangeError. */
export function rangeError(name: string, expected: string, received: string): RangeError {
  return new RangeError(`Expected ${expected} for ${name} but received ${received}`);
}

/** Native failures carry a `code`; they surface as SsdError. TypeError and RangeError pass through. */
export function fromNativeError(err: unknown): unknown {
  // Not `instanceof Error`: an error made by the addon belongs to the main realm, which differs from
  // the caller's in a vm context (jest, for one), so it is recognised by shape.
  if (typeof err === 'object' && err !== null && !(err instanceof SsdError)) {
    const { code, message } = err as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && code.startsWith('ERR_SSD_') && typeof message === 'string') return new SsdError(code as SsdErrorCode, message);
  }
  return err;
}
