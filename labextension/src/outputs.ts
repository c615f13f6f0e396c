/**
 * After a run, its job's open notebooks show what each step cell printed, as running the cells
 * would: the outputs, and the step's number as the execution count (`[3]:` is step 3). A
 * notebook saved before the run stays unmodified: the outputs are a view of the run, not an
 * edit (the file is not written; a later save keeps them, as with cells run by hand).
 */
import { CodeCell } from '@jupyterlab/cells';
import { PathExt } from '@jupyterlab/coreutils';
import { NotebookPanel } from '@jupyterlab/notebook';

import { runOutputs } from './api';
import { Lab } from './lab';
import { RunState, StepOutputs, outputsByCell } from './runs';

type Outputs = Parameters<CodeCell['model']['outputs']['fromJSON']>[0];

/** Put the outputs of the run's step cells into its job's open notebooks. */
export async function showRunOutputs(lab: Lab, run: RunState): Promise<void> {
  if (!run.run_number) {
    return; // ended before its first step: nothing ran
  }
  const { steps } = await runOutputs(run.id);
  await Promise.all(lab.notebooksOf(run.directory).map(panel => showOutputs(panel, steps)));
}

async function showOutputs(panel: NotebookPanel, steps: readonly StepOutputs[]): Promise<void> {
  const cells = panel.content.widgets;
  const placed = outputsByCell(
    cells.map(cell => cell.model.id),
    PathExt.basename(panel.context.path),
    steps
  );
  const model = panel.context.model;
  const dirty = model.dirty;
  for (const [index, step] of placed) {
    const cell = cells[index];
    if (cell instanceof CodeCell) {
      cell.model.outputs.fromJSON(step.outputs as unknown as Outputs);
      cell.model.executionCount = step.order;
    }
  }
  // the cells report their change on the next turn of the event loop: their notebook is only
  // as modified as it was before, after that
  await new Promise(resolve => window.setTimeout(resolve, 0));
  model.dirty = dirty;
}
