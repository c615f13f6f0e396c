/**
 * Step cells in open notebooks: numbered in run order at their top right (SQL cells marked),
 * and the "Toggle step" command of the nbplane menu and the cell toolbar.
 */
import { Cell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';

import { CommandIDs } from './commands';
import { stepIcon } from './icons';
import { Lab } from './lab';
import { CellInfo, hasStepTag, numberSteps, toggleStepTag } from './steps';

const BADGE = 'nbplane-step-badge';
const STEP_CELL = 'nbplane-step-cell';

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

/** Keeps a notebook's step badges up to date while it is open. */
class StepNumbering {
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
