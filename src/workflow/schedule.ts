/**
 * Schedule triggers (DESIGN.md §1): the checks `ferry validate` makes of `cron` and
 * `timezone`, and the next fire time. Parsing and date arithmetic are croner's; the
 * messages are ours, naming the field and its range.
 */
import { Cron } from 'croner';
import { closest } from './schema-errors.js';

/** A cron field: its name in messages and the values it takes (day of week: 0 and 7 are Sunday). */
interface Field {
  name: string;
  min: number;
  max: number;
}

const MINUTE_TO_WEEKDAY: Field[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 7 },
];
const SECOND: Field = { name: 'second', min: 0, max: 59 };

/** Five fields, or six with seconds first; croner's own modes would also take seven (years). */
const CRON_MODE = '5-or-6-parts';

/** A compiled schedule: croner's pattern in a zone, paused (it never arms a timer of its own). */
export function cronOf(expression: string, timezone: string): Cron {
  return new Cron(expression, { mode: CRON_MODE, timezone, paused: true });
}

/** The first tick strictly after `after`, or undefined when the expression never fires again. */
export function nextTick(cron: Cron, after: Date): Date | undefined {
  return cron.nextRun(after) ?? undefined;
}

/**
 * What is wrong with a cron expression, in words, or undefined when it is fine:
 * `minute 61 is out of range 0-59`, `6 fields…`, `never fires`.
 */
export function cronProblem(expression: string): string | undefined {
  const text = expression.trim();
  if (!text.startsWith('@')) {
    const parts = text.split(/\s+/);
    if (parts.length !== 5 && parts.length !== 6) {
      return `${parts.length} field${parts.length === 1 ? '' : 's'}; write 5 (minute hour day-of-month month day-of-week) or 6 with seconds first`;
    }
    const fields = parts.length === 6 ? [SECOND, ...MINUTE_TO_WEEKDAY] : MINUTE_TO_WEEKDAY;
    for (const [i, part] of parts.entries()) {
      const field = fields[i] as Field;
      const bad = numbersOf(part).find((n) => n < field.min || n > field.max);
      if (bad !== undefined) return `${field.name} ${bad} is out of range ${field.min}-${field.max}`;
    }
  }
  let cron: Cron;
  try {
    cron = cronOf(text, 'UTC');
  } catch (error) {
    return (error instanceof Error ? error.message : String(error)).replace(/^CronPattern: /, '');
  }
  // Looked for over several years: `0 0 30 2 *` (February 30th) is valid syntax and never comes.
  return cron.nextRun(new Date()) === null ? 'never fires (no date matches it)' : undefined;
}

/** The values a field names, before `/step` and without `#n` (nth weekday): `1-5/2` -> 1, 5. */
function numbersOf(part: string): number[] {
  return part.split(',').flatMap((piece) => {
    const base = piece.split('/')[0]?.replace(/#\d+$/, '') ?? '';
    return (base.match(/\d+/g) ?? []).map(Number);
  });
}

/**
 * What is wrong with a time zone, or undefined when the runtime knows it: `Europe/Berln` is
 * not an IANA time zone (did you mean Europe/Berlin?).
 */
export function timezoneProblem(zone: string): string | undefined {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return undefined;
  } catch {
    const suggestion = closest(zone, ['UTC', ...Intl.supportedValuesOf('timeZone')]);
    return `\`${zone}\` is not an IANA time zone${suggestion ? ` (did you mean ${suggestion}?)` : ''}; write a name like Europe/Berlin, America/New_York or UTC`;
  }
}

/** `2026-01-02 03:17:00` as the wall clock of `zone` shows `at`. */
export function wallClock(at: Date, zone: string): string {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' })
      .formatToParts(at)
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}
