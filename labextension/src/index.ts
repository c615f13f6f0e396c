/**
 * nbplane in JupyterLab: the "nbplane" menu (declared in schema/plugin.json), the step toggle
 * in the cell toolbar, step numbering and failing-cell marks in notebooks, run views and the
 * jobs side panel. Everything goes through nbplane's Jupyter server extension (./api); each
 * feature is its own module, and `activate` only wires them together.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker } from '@jupyterlab/notebook';

import { activateAuth } from './auth';
import { activateDeploy } from './deploy';
import { activateDeployments } from './deployments';
import { FailingCell } from './failures';
import { activateHelp } from './help';
import { activateJobs } from './jobs';
import { Lab } from './lab';
import { activateStepCells } from './stepcells';

export { CommandIDs } from './commands';

const PLUGIN_ID = '@nbplane/jupyterlab:plugin';

function activate(app: JupyterFrontEnd, tracker: INotebookTracker, docManager: IDocumentManager): void {
  const lab = new Lab(app, tracker, docManager);
  activateStepCells(lab);
  const failingCell = new FailingCell(lab);
  activateJobs(lab, failingCell);
  const jobsPanel = activateDeployments(lab);
  activateDeploy(lab, jobsPanel);
  activateAuth(lab, jobsPanel);
  activateHelp(lab);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'nbplane: notebook data jobs in JupyterLab',
  autoStart: true,
  requires: [INotebookTracker, IDocumentManager],
  activate
};

export default plugin;
