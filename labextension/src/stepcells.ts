/**
 * Step cells in open notebooks: numbered in run order at their top right (SQL cells marked),
 * and the "Toggle step" command of the nbplane menu and the cell toolbar.
 */
import { Cell } from '@jupyterlab/cells';
import { PathExt } from '@jupyterlab/coreutils';
import { NotebookPanel } from '@jupyterlab/notebook';

import { describeLocalJob } from './api';
import { CommandIDs } from './commands';
import { stepIcon } from './icons';
import { Lab } from './lab';
import { stepOffset } from './runs';
import { CellInfo, hasStepTag, numberSteps, toggleStepTag } from './steps';

const BADGE = 'nbplane-step-badge';
const STEP_CELL = 'nbplane-step-cell';
const SEPARATOR = 'nbplane-step-badge-separator';
const KIND = 'nbplane-step-badge-kind';

function part(text: string, className: string): HTMLSpanElement {
  const span = document.createElement('span');
  span.className = className;
  span.textContent = text;
  return span;
}

export function activateStepCells(lab: Lab): void {
  const { commands, tracker } = lab;
  tracker.widgetAdded.connect((_, panel) => {
    void panel.context.ready.then(() => new StepNumbering(panel));
  });
  commands.addCommand(CommandIDs.toggleStep, {
    label: 'Toggle step',
    caption: 'Make this cell a job step, or not',
    icon: stepIcon,
    isEnabled: () => tracker.activeCell?.model.type === 'code',
    isToggled: () => !!tracker.activeCell && hasStepTag(tagsOf(tracker.activeCell)),
    execute: () => {
      const cell = tracker.activeCell;
      if (cell && cell.model.type === 'code') {
        toggleStep(cell);
        commands.notifyCommandChanged(CommandIDs.toggleStep);
      }
    }
  });
  tracker.activeCellChanged.connect(() => commands.notifyCommandChanged(CommandIDs.toggleStep));
}

function tagsOf(cell: Cell): string[] {
  const tags = cell.model.getMetadata('tags');
  return Array.isArray(tags) ? tags.filter((tag): tag is string => typeof tag === 'string') : [];
}

/** Toggle the `step` tag of a cell. */
function toggleStep(cell: Cell): void {
  const tags = toggleStepTag(tagsOf(cell));
  if (tags.length) {
    cell.model.setMetadata('tags', tags);
  } else {
    cell.model.deleteMetadata('tags');
  }
}

/**
 * Keeps a notebook's step badges up to date while it is open. Numbers are the job's run order
 * (as in the run view and the CLI): the steps of the job's earlier files, as the server last
 * read them (at opening and after each save), then this notebook's as it is now.
 */
class StepNumbering {
  private readonly watched = new WeakSet<object>();
  private pending = 0;
  private offset = 0;

  constructor(private readonly panel: NotebookPanel) {
    const model = panel.content.model;
    model?.contentChanged.connect(this.schedule, this);
    model?.cells.changed.connect(this.schedule, this);
    panel.context.saveState.connect((_, state) => state === 'completed' && void this.readJob());
    this.schedule();
    void this.readJob();
  }

  /** The steps before this notebook's, from the job's folder (none when it is no job). */
  private async readJob(): Promise<void> {
    const path = this.panel.context.path;
    let offset = 0;
    try {
      const job = await describeLocalJob(PathExt.dirname(path));
      offset = stepOffset(job.steps, PathExt.basename(path));
    } catch {
      // not a job folder (yet): the notebook's own steps count from 1
    }
    if (offset !== this.offset) {
      this.offset = offset;
      this.schedule();
    }
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
      const number = this.offset + label.number;
      const text = `step ${number}${label.sql ? ' · SQL' : ''}`;
      if (badge.textContent !== text) {
        // "SQL" on a line of its own under the number, to fit the prompt column; the text
        // (what a screen reader says) stays "step 3 · SQL"
        badge.replaceChildren(`step ${number}`, ...(label.sql ? [part(' · ', SEPARATOR), part('SQL', KIND)] : []));
      }
      badge.setAttribute('data-step', String(number));
      badge.classList.toggle('nbplane-sql', label.sql);
      cell.addClass(STEP_CELL);
    }
  }
}
