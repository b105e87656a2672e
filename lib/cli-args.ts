/**
 * The command line's one mechanism for flags: each command declares its flags in a table
 * (CommandSpec), and both the parser (parseFlags) and the help text (helpText) read that table, so
 * the help cannot name a flag the parser refuses or leave out one it takes.
 *
 * A flag is a switch (no value) or takes the next argument as its value, which the flag's
 * ValueType parses and checks. Errors (UsageError) name the flag, what it takes and what came; an
 * unknown flag is named with the nearest known one when that is close. A command with modes (bench:
 * CPU, --device cuda, --step, --step --device cuda) says which modes each flag applies to, and a
 * flag given in another mode is an error too.
 *
 * Progress reports what long commands (check, bench) are doing on stderr (see Progress).
 */

/** A usage error: the command line asked for something the command does not take (exit code 2). */
export class UsageError extends Error {}

/** How a flag's value is read: `expected` says what it takes, in the help and in errors. */
export interface ValueType<T> {
  expected: string;
  /** The value of `text`, or undefined when `text` is not one. */
  parse(text: string): T | undefined;
}

/** A non-negative integer from `min` (to `max` when given), written in decimal digits. */
export function integer(min: number, max?: number): ValueType<number> {
  return {
    expected: max === undefined ? `an integer >= ${min}` : `an integer from ${min} to ${max}`,
    parse: (text) => {
      const v = Number(text);
      return /^\d+$/.test(text) && v >= min && (max === undefined || v <= max) ? v : undefined;
    },
  };
}

/** A number above 0 and at most `max`. */
export function positive(max: number): ValueType<number> {
  return {
    expected: `a number above 0 and at most ${max}`,
    parse: (text) => {
      const v = Number(text);
      return text.trim() !== '' && v > 0 && v <= max ? v : undefined;
    },
  };
}

/** Integers >= `min` separated by commas. */
export function integers(min: number): ValueType<number[]> {
  const one = integer(min);
  return {
    expected: `integers >= ${min} separated by commas`,
    parse: (text) => {
      const values = text.split(',').map((s) => one.parse(s));
      return values.every((v) => v !== undefined) ? (values as number[]) : undefined;
    },
  };
}

/** One of `choices`. */
export function oneOf<T extends string>(choices: readonly T[]): ValueType<T> {
  return {
    expected: `one of ${choices.join(', ')}`,
    parse: (text) => choices.find((c) => c === text),
  };
}

/** Names from `choices` separated by commas (each at most once). */
export function namesOf(choices: readonly string[]): ValueType<string[]> {
  return {
    expected: `names from ${choices.join(', ')} separated by commas`,
    parse: (text) => {
      const names = text.split(',');
      return names.every((n) => choices.includes(n)) && new Set(names).size === names.length ? names : undefined;
    },
  };
}

/** Any text that is not empty (a file name). */
export const text: ValueType<string> = { expected: 'a non-empty text', parse: (t) => (t === '' ? undefined : t) };

/** A flag's value once parsed: a switch gives true. */
export type FlagValue = true | number | string | number[] | string[];

export interface FlagSpec {
  /** '--runs' */
  name: string;
  /** The value's placeholder in the help ('N'); absent for a switch. */
  placeholder?: string;
  /** How the value is read; absent for a switch. */
  type?: ValueType<FlagValue>;
  /** What the flag does, with its default: the help's text (lines after the first are indented). */
  help: string;
  /** The modes it applies to (CommandSpec.modes); absent: every mode. */
  modes?: readonly string[];
  /** A heading printed above this flag in the help (to group flags). */
  section?: string;
}

export interface CommandSpec {
  name: string;
  /** Usage lines, after 'ssd-kernels ' */
  synopsis: string[];
  /** One line for the list of commands. */
  summary: string;
  /** What the command does (printed under the usage lines). */
  about?: string;
  flags: FlagSpec[];
  /** The command's modes, named as written on the command line ('bench --step'), and how to tell which one a parse is in. */
  modes?: { names: Record<string, string>; of: (flags: ParsedFlags) => string };
}

/** The flags of one command line, parsed and checked. */
export class ParsedFlags {
  constructor(private readonly values: ReadonlyMap<string, FlagValue>) {}

  has(name: string): boolean {
    return this.values.has(name);
  }

  number(name: string): number | undefined {
    const v = this.values.get(name);
    if (v !== undefined && typeof v !== 'number') throw new Error(`internal: ${name} is not a number flag`);
    return v;
  }

  string(name: string): string | undefined {
    const v = this.values.get(name);
    if (v !== undefined && typeof v !== 'string') throw new Error(`internal: ${name} is not a text flag`);
    return v;
  }

  numbers(name: string): number[] | undefined {
    const v = this.values.get(name);
    if (v !== undefined && !(Array.isArray(v) && v.every((x) => typeof x === 'number'))) throw new Error(`internal: ${name} is not a list of numbers`);
    return v;
  }

  strings(name: string): string[] | undefined {
    const v = this.values.get(name);
    if (v !== undefined && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))) throw new Error(`internal: ${name} is not a list of names`);
    return v;
  }
}

/** Edit distance (insertions, deletions, substitutions) between two short strings. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = row;
  }
  return previous[b.length];
}

/** The known name nearest to `name` when it is close (at most 2 edits, and fewer than half its length), else undefined. */
export function nearest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = distance(name, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return bestDistance <= 2 && bestDistance < name.length / 2 ? best : undefined;
}

/** '--help' or '-h' anywhere among a command's arguments asks for its help. */
export function wantsHelp(args: readonly string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}

/** Parses a command's arguments by its table; throws UsageError naming the flag at fault. */
export function parseFlags(spec: CommandSpec, args: readonly string[]): ParsedFlags {
  const values = new Map<string, FlagValue>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const flag = spec.flags.find((f) => f.name === arg);
    if (!flag) {
      if (!arg.startsWith('-')) throw new UsageError(`unexpected argument '${arg}' (${spec.name} takes only flags)`);
      const near = nearest(arg, spec.flags.map((f) => f.name));
      throw new UsageError(`unknown option '${arg}'${near ? ` (did you mean ${near}?)` : ''}`);
    }
    if (values.has(arg)) throw new UsageError(`${arg} is given twice`);
    if (!flag.type) {
      values.set(arg, true);
      continue;
    }
    const next = args[i + 1];
    if (next === undefined || next.startsWith('--')) {
      throw new UsageError(`${arg} needs a value: ${flag.type.expected}${next === undefined ? '' : `, not the flag '${next}'`}`);
    }
    const value = flag.type.parse(next);
    if (value === undefined) throw new UsageError(`${arg} takes ${flag.type.expected}, not '${next}'`);
    values.set(arg, value);
    i++;
  }
  const parsed = new ParsedFlags(values);
  if (spec.modes) {
    const mode = spec.modes.of(parsed);
    for (const f of spec.flags) {
      if (values.has(f.name) && f.modes && !f.modes.includes(mode)) {
        throw new UsageError(`${f.name} does not apply to ${spec.modes.names[mode]} (it is for ${f.modes.map((m) => spec.modes!.names[m]).join(' and ')})`);
      }
    }
  }
  return parsed;
}

/** Column where the flags' help text starts. */
const HELP_COLUMN = 21;

/** A command's help: its usage lines, what it does, and one entry per flag from its table. */
export function helpText(spec: CommandSpec): string {
  const lines = spec.synopsis.map((s, i) => `${i === 0 ? 'usage: ' : '       '}ssd-kernels ${s}`);
  if (spec.about) lines.push(...spec.about.split('\n').map((l) => `  ${l}`));
  if (spec.flags.length === 0) lines.push(`  ${spec.name} takes no options.`);
  lines.push('');
  const all: FlagSpec[] = [...spec.flags, { name: '-h, --help', help: 'print this help and exit' }];
  for (const f of all) {
    if (f.section) lines.push(`  ${f.section}`);
    const head = `  ${f.name}${f.placeholder ? ` ${f.placeholder}` : ''}`;
    const [first, ...rest] = f.help.split('\n');
    const pad = head.length < HELP_COLUMN ? head.padEnd(HELP_COLUMN) : `${head}\n${''.padEnd(HELP_COLUMN)}`;
    lines.push(`${pad}${first}`);
    for (const r of rest) lines.push(`${''.padEnd(HELP_COLUMN)}${r}`);
    if (f.modes && spec.modes) lines.push(`${''.padEnd(HELP_COLUMN)}(for ${f.modes.map((m) => spec.modes!.names[m]).join(' and ')} only)`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Progress lines on stderr for the long commands (check, bench): on when stderr is a terminal,
 * where each line overwrites the one before and the last is cleared at the end. The environment
 * variable SSD_KERNELS_PROGRESS=1 turns them on anywhere (off a terminal each is a line of its
 * own, as tests and logs read them), and SSD_KERNELS_PROGRESS=0 turns them off. Never with --json,
 * whose stderr stays empty.
 */
export class Progress {
  readonly enabled: boolean;
  private readonly overwrite: boolean;
  private shown = false;

  constructor(json: boolean, env: NodeJS.ProcessEnv = process.env, tty: boolean = process.stderr.isTTY === true) {
    const setting = env.SSD_KERNELS_PROGRESS;
    this.enabled = !json && (setting === '1' || (setting !== '0' && tty));
    this.overwrite = tty;
  }

  /** Shows one progress line. */
  report(line: string): void {
    if (!this.enabled) return;
    process.stderr.write(this.overwrite ? `\r\x1b[K${line}` : `${line}\n`);
    this.shown = true;
  }

  /** Clears the last line on a terminal, before the results are printed. */
  done(): void {
    if (this.enabled && this.overwrite && this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}
