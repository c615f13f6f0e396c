/**
 * nbplane inside open notebooks: step cells numbered in run order (SQL cells marked), the step
 * tag toggled from the cell toolbar, and the failing cell of the last failed run highlighted
 * with its error.
 */
import { Cell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';

import { Failure, failingCellIndex } from './runs';
import { CellInfo, numberSteps, toggleStepTag } from './steps';

const BADGE = 'nbplane-step-badge';
const STEP_CELL = 'nbplane-step-cell';
const FAILED_CELL = 'nbplane-failed-cell';
const ERROR_BOX = 'nbplane-cell-error';

function tagsOf(cell: Cell): string[] {
  const tags = cell.model.getMetadata('tags');
  return Array.isArray(tags) ? tags.filter((tag): tag is string => typeof tag === 'string') : [];
}

/** Toggle the `step` tag of a cell. */
export function toggleStep(cell: Cell): void {
  const tags = toggleStepTag(tagsOf(cell));
  if (tags.length) {
    cell.model.setMetadata('tags', tags);
  } else {
    cell.model.deleteMetadata('tags');
  }
}

/** Keeps a notebook's step badges up to date while it is open. */
export class StepNumbering {
  private readonly watched = new WeakSet<object>();
  private pending = 0;

  constructor(private readonly panel: NotebookPanel) {
    const model = panel.content.model;
    model?.contentChanged.connect(this.schedule, this);
    model?.cells.changed.connect(this.schedule, this);
    this.schedule();
  }

  /** Refresh soon, once for a burst of changes. */
  schedule(): void {
    if (!this.pending) {
      this.pending = window.setTimeout(() => {
        this.pending = 0;
        this.refresh();
      }, 50);
    }
  }

  refresh(): void {
    if (this.panel.isDisposed) {
      return;
    }
    const cells = this.panel.content.widgets;
    for (const cell of cells) {
      if (!this.watched.has(cell.model)) {
        this.watched.add(cell.model);
        cell.model.metadataChanged.connect(this.schedule, this);
      }
    }
    const infos: CellInfo[] = cells.map(cell => ({
      id: cell.model.id,
      type: cell.model.type,
      tags: tagsOf(cell),
      source: cell.model.sharedModel.getSource()
    }));
    const labels = numberSteps(infos);
    for (const cell of cells) {
      const label = labels.get(cell.model.id);
      let badge = cell.node.querySelector(`:scope > .${BADGE}`);
      if (!label) {
        badge?.remove();
        cell.removeClass(STEP_CELL);
        continue;
      }
      if (!badge) {
        badge = document.createElement('div');
        badge.className = BADGE;
        cell.node.insertBefore(badge, cell.node.firstChild);
      }
      const text = `step ${label.number}${label.sql ? ' · SQL' : ''}`;
      if (badge.textContent !== text) {
        badge.textContent = text;
      }
      badge.setAttribute('data-step', String(label.number));
      badge.classList.toggle('nbplane-sql', label.sql);
      cell.addClass(STEP_CELL);
    }
  }
}

/** Remove the failure marks from a notebook. */
export function clearFailure(panel: NotebookPanel): void {
  for (const cell of panel.content.widgets) {
    cell.removeClass(FAILED_CELL);
    cell.node.querySelector(`:scope > .${ERROR_BOX}`)?.remove();
  }
}

/**
 * Highlight the failing cell with its error and make it the active cell; false when the cell
 * is no longer in the notebook.
 */
export function showFailure(panel: NotebookPanel, failure: Failure): boolean {
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
