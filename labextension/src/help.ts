/** The "Help" command: what the nbplane menu does, in a few lines. */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { CommandIDs } from './commands';
import { Lab } from './lab';

const LINES = [
  'Tag code cells as steps with the cell toolbar\'s step button (or nbplane → Toggle step): they run in order, numbered at their top right; a cell starting with %%sql is SQL.',
  'Run job runs the notebook\'s folder and shows each step and the log live; a failed run marks the failing cell with its error (Go to failing cell jumps there).',
  'Resume reruns from the changed or failed step.',
  'Login (a token from `nbplane token create`, or OAuth), then Deploy uploads the folder and schedules it; the nbplane side panel shows your jobs and their latest executions.',
  'The jobs page (nbplane → Jobs page, the launcher, or the side panel) lists the local runs under this folder and your deployed jobs; act on a job from its row.',
  'Create job works on a folder or a notebook in the file browser\'s context menu and from the notebook toolbar; Convert job to notebook makes one notebook of a job\'s .py and .sql steps.',
  'The same works from the command line: nbplane job run DIR, nbplane job deploy …'
];

export function activateHelp(lab: Lab): void {
  lab.commands.addCommand(CommandIDs.help, {
    label: 'Help',
    caption: 'What the nbplane menu does',
    execute: () => {
      const body = new Widget();
      body.addClass('nbplane-help');
      const list = document.createElement('ul');
      for (const line of LINES) {
        const item = document.createElement('li');
        item.textContent = line;
        list.appendChild(item);
      }
      body.node.appendChild(list);
      return showDialog({ title: 'nbplane', body, buttons: [Dialog.okButton()] });
    }
  });
}
