/**
 * What the front end makes of a run the server describes: progress, and where a failed run
 * failed (which notebook and cell, with the error to show there). Pure functions: unit-tested
 * without JupyterLab.
 */

/** Where a step of a job is: its notebook (or file) and cell, in run order. */
export interface StepLocation {
  order: number;
  name: string;
  file: string;
  kind: string;
  cell_index: number | null;
  cell_id: string | null;
  sql: boolean;
}

/** One step of a run, in run order (the server's `steps` entries). */
export interface RunStep extends StepLocation {
  status: string;
  reason?: string | null;
  started_at?: string | null;
  finished_at?: string | null;
}

/** Where and why a run failed (the server's `error`). */
export interface RunError {
  step?: string | null;
  file?: string | null;
  cell_index?: number | null;
  cell_id?: string | null;
  line?: number | null;
  message?: string | null;
  summary?: string | null;
  traceback?: string | null;
}

/** A run as `runs/{id}` describes it. */
export interface RunState {
  id: string;
  directory: string;
  status: string;
  steps: RunStep[];
  error: RunError | null;
  log_size?: number;
  /** The run's record (null until its first step starts): its number among the job's runs. */
  run_number?: number | null;
}

/**
 * A step as every nbplane view names it: its number in the job's run order (the badge's), then
 * where it is: `step 3 · cell 5 of etl.ipynb`, with cell 5 counted as JupyterLab counts cells
 * (from 1, markdown cells included: the server's `cell_index` is 0-based), or `step 4 · load.py`.
 */
export function stepLabel(step: StepLocation): string {
  const where = step.cell_index !== null ? `cell ${step.cell_index + 1} of ${step.file}` : step.file;
  return `step ${step.order} · ${where}${step.sql ? ' (SQL)' : ''}`;
}

/**
 * How many of the job's steps run before the notebook `file`'s: its badges count on from there,
 * so a badge says the step number the run view and the CLI say. Files run in natural name
 * order (`2_a` before `10_b`); a notebook without a step yet counts the steps of earlier files.
 */
export function stepOffset(steps: readonly StepLocation[], file: string): number {
  const own = steps.filter(step => step.file === file);
  if (own.length) {
    return Math.min(...own.map(step => step.order)) - 1;
  }
  const before = (other: string) => other.localeCompare(file, undefined, { numeric: true }) < 0;
  return steps.filter(step => before(step.file)).length;
}

/**
 * Log text as the run view shows it: without terminal escapes (colours, cursor moves) and
 * carriage-return redraws, in case a step writes them; the CLI's own output is plain already.
 */
export function plainLog(text: string): string {
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r(?!\n)/g, '\n');
}

export const FINAL_STATUSES = ['succeeded', 'failed', 'cancelled', 'skipped'];

export function isFinal(status: string): boolean {
  return FINAL_STATUSES.includes(status);
}

/** "2 of 5 steps done" and the share done, for a progress bar. */
export function progress(steps: readonly RunStep[]): { done: number; total: number; text: string } {
  const done = steps.filter(step => ['succeeded', 'skipped'].includes(step.status)).length;
  const total = steps.length;
  return { done, total, text: `${done} of ${total} step${total === 1 ? '' : 's'} done` };
}

/** The failing cell: the notebook's path (relative to the Jupyter root) and the cell in it. */
export interface Failure {
  path: string;
  cellId: string | null;
  cellIndex: number | null;
  line: number | null;
  text: string;
}

function join(directory: string, file: string): string {
  return directory ? `${directory.replace(/\/+$/, '')}/${file}` : file;
}

/**
 * Where a failed run failed, when that is a notebook cell; null for a run that did not fail or
 * failed outside a notebook (a .py or .sql step, or before the first step).
 */
export function failureOf(run: RunState): Failure | null {
  if (run.status !== 'failed' || !run.error) {
    return null;
  }
  const error = run.error;
  const failed = run.steps.find(step => step.status === 'failed');
  const file = error.file ?? failed?.file;
  if (!file || !file.endsWith('.ipynb')) {
    return null;
  }
  const cellId = error.cell_id ?? failed?.cell_id ?? null;
  const cellIndex = error.cell_index ?? failed?.cell_index ?? null;
  if (cellId === null && cellIndex === null) {
    return null;
  }
  return {
    path: join(run.directory, file),
    cellId,
    cellIndex,
    line: error.line ?? null,
    text: errorText(error)
  };
}

/** The error in words: the summary or message, then the user's traceback when there is one. */
export function errorText(error: RunError): string {
  const head = error.summary || error.message || 'the step failed';
  const where = error.line ? ` (line ${error.line})` : '';
  return error.traceback ? `${head}${where}\n\n${error.traceback}` : `${head}${where}`;
}

/**
 * Where a cell the server names (by id, else by 0-based index) is among cells (ids in notebook
 * order); -1 when it is gone.
 */
export function cellPosition(cellIds: readonly string[], cellId: string | null, cellIndex: number | null): number {
  if (cellId !== null) {
    const index = cellIds.indexOf(cellId);
    if (index >= 0) {
      return index;
    }
  }
  if (cellIndex !== null && cellIndex < cellIds.length) {
    return cellIndex;
  }
  return -1;
}

/** The index of the failing cell among cells (ids in notebook order); -1 when it is gone. */
export function failingCellIndex(cellIds: readonly string[], failure: Failure): number {
  return cellPosition(cellIds, failure.cellId, failure.cellIndex);
}

/** Where a job last failed, as its run records say (`job?directory=` `failure`). */
export function rememberedFailure(directory: string, error: RunError | null): Failure | null {
  return error ? failureOf({ id: '', directory, status: 'failed', steps: [], error }) : null;
}

/** A step cell's outputs after a run (`runs/{id}/outputs`). */
export interface StepOutputs {
  order: number;
  file: string;
  cell_index: number | null;
  cell_id: string | null;
  status: string;
  outputs: Record<string, unknown>[];
}

/**
 * Which cell of a notebook (cell ids in order) gets which step's outputs: pairs of the cell's
 * position and the step; steps of other files, or whose cell is gone, are left out. A failed
 * step's error output is left out too: the failing-cell mark shows it, once.
 */
export function outputsByCell(
  cellIds: readonly string[],
  file: string,
  steps: readonly StepOutputs[]
): [number, StepOutputs][] {
  return steps
    .filter(step => step.file === file)
    .map(step => {
      const outputs = step.outputs.filter(output => output.output_type !== 'error');
      return [cellPosition(cellIds, step.cell_id, step.cell_index), { ...step, outputs }] as [number, StepOutputs];
    })
    .filter(([index]) => index >= 0);
}

/** A server error body in words: its message, and the field it names. */
export function serverErrorText(status: number, body: unknown): string {
  if (body && typeof body === 'object') {
    const data = body as Record<string, unknown>;
    const message = [data.message, data.detail, data.reason].find(
      value => typeof value === 'string' && value
    ) as string | undefined;
    if (message) {
      const field = typeof data.field === 'string' && !message.includes(data.field) ? ` (${data.field})` : '';
      return `${message}${field}`;
    }
  }
  if (typeof body === 'string' && body.trim()) {
    return body.trim();
  }
  if (status === 403 || status === 401) {
    return 'not allowed: log in to nbplane (nbplane → Login) or reload JupyterLab';
  }
  return `the server answered ${status || 'nothing'}`;
}
