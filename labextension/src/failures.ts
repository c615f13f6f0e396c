/**
 * The failing cell of the last failed run: highlighted with its error in its notebook (also
 * when that notebook opens later, or the page is reloaded: the server keeps where each job last
 * failed in its run records), and the "Go to failing cell" command.
 */
import { Notification } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { NotebookPanel } from '@jupyterlab/notebook';

import { describeLocalJob } from './api';
import { CommandIDs } from './commands';
import { Lab } from './lab';
import { Failure, RunState, failingCellIndex, failureOf, rememberedFailure } from './runs';

const FAILED_CELL = 'nbplane-failed-cell';
const ERROR_BOX = 'nbplane-cell-error';

export class FailingCell {
  private failure: Failure | null = null;

  constructor(private readonly lab: Lab) {
    lab.tracker.widgetAdded.connect((_, panel) => {
      void panel.context.ready.then(() => this.showIn(panel));
    });
    lab.commands.addCommand(CommandIDs.goToFailingCell, {
      label: 'Go to failing cell',
      caption: 'The cell where the last run failed',
      isEnabled: () => this.failure !== null,
      execute: () => this.goTo()
    });
  }

  /** A notebook opened: mark its failing cell, the last run's or the one its job recorded. */
  private async showIn(panel: NotebookPanel): Promise<void> {
    const path = panel.context.path;
    let failure = this.failure?.path === path ? this.failure : null;
    if (!failure) {
      const directory = PathExt.dirname(path);
      try {
        failure = rememberedFailure(directory, (await describeLocalJob(directory)).failure ?? null);
      } catch {
        return; // not a job folder: nothing failed here
      }
      if (failure?.path !== path) {
        return;
      }
      this.failure ??= failure;
      this.lab.commands.notifyCommandChanged(CommandIDs.goToFailingCell);
    }
    await panel.revealed;
    showFailure(panel, failure);
  }

  /** A run ended: its job's notebooks lose the old marks; where it failed, if in a cell. */
  record(run: RunState): Failure | null {
    for (const panel of this.lab.notebooksOf(run.directory)) {
      clearFailure(panel);
    }
    this.failure = failureOf(run);
    this.lab.commands.notifyCommandChanged(CommandIDs.goToFailingCell);
    return this.failure;
  }

  /** Open the failing cell's notebook and mark the cell. */
  async goTo(): Promise<void> {
    const failure = this.failure;
    if (!failure) {
      Notification.info('No failed run to go to.', { autoClose: 4000 });
      return;
    }
    const panel = await this.lab.openNotebook(failure.path);
    if (panel && !showFailure(panel, failure)) {
      Notification.warning(`The failing cell is no longer in ${failure.path}.`, { autoClose: 6000 });
    }
  }
}

/** Remove the failure marks from a notebook. */
function clearFailure(panel: NotebookPanel): void {
  for (const cell of panel.content.widgets) {
    cell.removeClass(FAILED_CELL);
    cell.node.querySelector(`:scope > .${ERROR_BOX}`)?.remove();
  }
}

/**
 * Highlight the failing cell with its error and make it the active cell; false when the cell
 * is no longer in the notebook.
 */
function showFailure(panel: NotebookPanel, failure: Failure): boolean {
  clearFailure(panel);
  const notebook = panel.content;
  const index = failingCellIndex(
    notebook.widgets.map(cell => cell.model.id),
    failure
  );
  if (index < 0) {
    return false;
  }
  const cell = notebook.widgets[index];
  cell.addClass(FAILED_CELL);
  const box = document.createElement('pre');
  box.className = ERROR_BOX;
  box.setAttribute('role', 'alert');
  box.textContent = failure.text;
  cell.node.appendChild(box);
  notebook.activeCellIndex = index;
  void notebook.scrollToItem(index, 'center');
  return true;
}
