/**
 * What nbplane's features share of JupyterLab: its commands and shell, the open notebooks of a
 * job, and what the user typed last, so that one dialog prefills the next.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { MainAreaWidget } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import { Values } from './form';
import { nbplaneIcon } from './icons';

export class Lab {
  /** What the user typed last (kept in memory only). */
  readonly last: Values = { team: '', name: '', arguments: '', enabled: true };

  constructor(
    readonly app: JupyterFrontEnd,
    readonly tracker: INotebookTracker,
    private readonly docManager: IDocumentManager
  ) {}

  get commands(): JupyterFrontEnd['commands'] {
    return this.app.commands;
  }

  get shell(): JupyterFrontEnd.IShell {
    return this.app.shell;
  }

  /** The folder of the notebook in front, else the job directory typed last. */
  currentDirectory(): string {
    const panel = this.tracker.currentWidget;
    return panel ? PathExt.dirname(panel.context.path) : String(this.last.directory ?? '');
  }

  /** The open notebooks of a job directory. */
  notebooksOf(directory: string): NotebookPanel[] {
    const panels: NotebookPanel[] = [];
    this.tracker.forEach(panel => {
      if (PathExt.dirname(panel.context.path) === directory) {
        panels.push(panel);
      }
    });
    return panels;
  }

  /** Save the job's changed notebooks: a run or a deploy reads the files. */
  async saveJob(directory: string): Promise<void> {
    const changed = this.notebooksOf(directory).filter(panel => panel.context.model.dirty);
    await Promise.all(changed.map(panel => panel.context.save()));
  }

  /** Open (or reveal) a notebook, once it shows; null when the file is not a notebook. */
  async openNotebook(path: string): Promise<NotebookPanel | null> {
    const widget = this.docManager.openOrReveal(path);
    if (!(widget instanceof NotebookPanel)) {
      return null;
    }
    await widget.context.ready;
    await widget.revealed;
    return widget;
  }

  /** Show `content` as a tab of the main area with nbplane's icon; `beside` splits to its right. */
  showInMain(content: Widget, beside: Widget | null = null): void {
    const widget = new MainAreaWidget({ content });
    widget.id = content.id;
    widget.title.label = content.title.label;
    widget.title.icon = nbplaneIcon;
    this.shell.add(widget, 'main', beside ? { ref: beside.id, mode: 'split-right' } : undefined);
    this.shell.activateById(widget.id);
  }
}
