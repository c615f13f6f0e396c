/**
 * Which cells of a notebook are job steps, and their numbers in run order. The runner's rule:
 * code cells tagged `step` (or VDK's `vdk`) run top to bottom; a cell whose first line is
 * `%%sql` (or `%%vdksql`) is SQL. Pure functions: unit-tested without JupyterLab.
 */

export const STEP_TAG = 'step';
const STEP_TAGS = [STEP_TAG, 'vdk'];

/** What the numbering needs of a cell. */
export interface CellInfo {
  id: string;
  type: string;
  tags: readonly string[];
  source: string;
}

/** A step cell's label. `number` counts from 1 within the notebook, in cell order. */
export interface StepLabel {
  number: number;
  sql: boolean;
}

/** Whether the tags make a code cell a step. */
export function hasStepTag(tags: readonly string[]): boolean {
  return tags.some(tag => STEP_TAGS.includes(tag));
}

export function isStep(cell: CellInfo): boolean {
  return cell.type === 'code' && hasStepTag(cell.tags);
}

export function isSql(source: string): boolean {
  const first = source.replace(/^\s+/, '').split('\n', 1)[0].trim();
  return /^%%(vdk)?sql\b/.test(first);
}

/** Step labels by cell id, numbered in run order. */
export function numberSteps(cells: readonly CellInfo[]): Map<string, StepLabel> {
  const labels = new Map<string, StepLabel>();
  for (const cell of cells) {
    if (isStep(cell)) {
      labels.set(cell.id, { number: labels.size + 1, sql: isSql(cell.source) });
    }
  }
  return labels;
}

/** The tags after toggling `step`: added when absent, removed (with `vdk`) when present. */
export function toggleStepTag(tags: readonly string[]): string[] {
  if (hasStepTag(tags)) {
    return tags.filter(tag => !STEP_TAGS.includes(tag));
  }
  return [...tags, STEP_TAG];
}
