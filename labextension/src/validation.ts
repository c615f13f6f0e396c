/**
 * Checks of dialog input, run before anything is sent, so a typo is named at its field instead
 * of coming back as a server error. Pure functions: unit-tested without JupyterLab.
 */

/** Job and team names, as the control plane accepts them (directory names, URL segments). */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

/** A checked value, or the field that is wrong and why. */
export type Checked<T> =
  | { ok: true; value: T }
  | { ok: false; field: string; message: string };

function fail<T>(field: string, message: string): Checked<T> {
  return { ok: false, field, message };
}

/** A job or team name. */
export function checkName(value: string, field = 'name'): Checked<string> {
  const name = value.trim();
  if (!name) {
    return fail(field, `${field} is required`);
  }
  if (!NAME_PATTERN.test(name)) {
    return fail(
      field,
      `${field} "${name}" must be 1-63 characters of lowercase letters, digits, "_", ".", "-", ` +
        'starting with a letter or digit'
    );
  }
  return { ok: true, value: name };
}

/** A job or team name that may be left empty (null). */
export function checkOptionalName(value: string, field = 'name'): Checked<string | null> {
  return value.trim() ? checkName(value, field) : { ok: true, value: null };
}

/** A directory relative to the Jupyter root, as the file browser shows it ('' is the root). */
export function checkDirectory(value: string, field = 'directory'): Checked<string> {
  const path = value.trim().replace(/^\/+|\/+$/g, '');
  if (path.split('/').some(part => part === '..')) {
    return fail(field, `${field} "${value}" must stay inside the Jupyter root (no "..")`);
  }
  return { ok: true, value: path };
}

/** Job arguments: a JSON object; empty means none. */
export function checkArguments(
  text: string,
  field = 'arguments'
): Checked<Record<string, unknown>> {
  const trimmed = text.trim();
  if (!trimmed) {
    return { ok: true, value: {} };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch (error) {
    return fail(field, `${field} is not valid JSON: ${(error as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return fail(field, `${field} must be a JSON object, like {"days": 7}`);
  }
  return { ok: true, value: parsed as Record<string, unknown> };
}

const CRON_NICKNAMES = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'];

/**
 * A cron schedule: 5 fields (minute hour day month weekday) or 6 with seconds first. The server
 * checks the fields' values; this catches an empty or truncated expression. Empty is allowed
 * only when `required` is false (a deployment without a schedule runs on demand).
 */
export function checkSchedule(
  text: string,
  required: boolean,
  field = 'schedule'
): Checked<string | null> {
  const schedule = text.trim().replace(/\s+/g, ' ');
  if (!schedule) {
    return required ? fail(field, `${field} is required, e.g. "0 6 * * *"`) : { ok: true, value: null };
  }
  if (CRON_NICKNAMES.includes(schedule)) {
    return { ok: true, value: schedule };
  }
  const fields = schedule.split(' ').length;
  if (fields !== 5 && fields !== 6) {
    return fail(
      field,
      `${field} "${schedule}" has ${fields} field${fields === 1 ? '' : 's'}; a cron expression ` +
        'has 5 (minute hour day month weekday) or 6 with seconds first, e.g. "*/15 * * * *"'
    );
  }
  return { ok: true, value: schedule };
}

/** Most retries a deployment may have, and the longest wait between attempts (seconds). */
export const MAX_RETRIES = 10;
export const MAX_RETRY_DELAY = 3600;

/** A deployment's retries: a whole number 0-10; empty keeps the deployed value (null). */
export function checkRetries(text: string, field = 'retries'): Checked<number | null> {
  const trimmed = text.trim();
  if (!trimmed) {
    return { ok: true, value: null };
  }
  const retries = Number(trimmed);
  if (!/^\d+$/.test(trimmed) || retries > MAX_RETRIES) {
    return fail(field, `${field} "${trimmed}" must be a whole number from 0 to ${MAX_RETRIES}`);
  }
  return { ok: true, value: retries };
}

/** Seconds before the first retry: more than 0, at most an hour; empty keeps it (null). */
export function checkRetryDelay(text: string, field = 'retry_delay'): Checked<number | null> {
  const trimmed = text.trim();
  if (!trimmed) {
    return { ok: true, value: null };
  }
  const seconds = Number(trimmed);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > MAX_RETRY_DELAY) {
    return fail(
      field,
      `${field} "${trimmed}" must be a number of seconds above 0, at most ${MAX_RETRY_DELAY}`
    );
  }
  return { ok: true, value: seconds };
}

/** The browser's own time zone, the deploy dialog's default. */
export function browserTimezone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

const TIMEZONE_SHAPE = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/;

/** An IANA time zone name (Europe/Paris, UTC); empty keeps the deployed one (null). Offsets
 * like "+02:00" are refused: the server reads names from the time zone database only. */
export function checkTimezone(text: string, field = 'timezone'): Checked<string | null> {
  const zone = text.trim();
  if (!zone) {
    return { ok: true, value: null };
  }
  let known = TIMEZONE_SHAPE.test(zone);
  if (known) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: zone });
    } catch {
      known = false;
    }
  }
  if (!known) {
    return fail(field, `${field} "${zone}" is not an IANA time zone name, like "Europe/Paris" or "UTC"`);
  }
  return { ok: true, value: zone };
}

/** Deployment arguments: a JSON object; empty keeps the deployed ones (null). */
export function checkDeployArguments(text: string, field = 'arguments'): Checked<Record<string, unknown> | null> {
  return text.trim() ? checkArguments(text, field) : { ok: true, value: null };
}

/** A suggested job name from a file or folder name: lowercase, other characters as "-". */
export function suggestName(fileName: string): string {
  const stem = fileName.replace(/\.ipynb$/i, '').toLowerCase();
  return stem.replace(/[^a-z0-9_.-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 63) || 'job';
}
