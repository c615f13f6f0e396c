/**
 * nbplane in JupyterLab: the "nbplane" menu (declared in schema/plugin.json), the step toggle
 * in the cell toolbar, step numbering and failing-cell marks in notebooks, run views and the
 * jobs side panel. Everything goes through nbplane's Jupyter server extension (./api); each
 * feature is its own module, and `activate` only wires them together.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { INotebookTracker } from '@jupyterlab/notebook';

import { activateAuth } from './auth';
import { activateDeploy } from './deploy';
import { activateDeployments } from './deployments';
import { FailingCell } from './failures';
import { activateFileBrowser } from './filebrowser';
import { activateHelp } from './help';
import { activateJobs } from './jobs';
import { activateJobsPage } from './jobspage';
import { Lab } from './lab';
import { activateStepCells } from './stepcells';

import { CommandIDs } from './commands';

export { CommandIDs };

const PLUGIN_ID = '@nbplane/jupyterlab:plugin';

function activate(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  docManager: IDocumentManager,
  browsers: IFileBrowserFactory | null,
  launcher: ILauncher | null
): void {
  const lab = new Lab(app, tracker, docManager);
  activateStepCells(lab);
  const failingCell = new FailingCell(lab);
  activateJobs(lab, failingCell);
  const jobsPanel = activateDeployments(lab);
  activateDeploy(lab, jobsPanel);
  activateAuth(lab, jobsPanel);
  activateHelp(lab);
  activateJobsPage(lab);
  activateFileBrowser(lab, browsers);
  launcher?.add({ command: CommandIDs.jobsPage, category: 'Other', rank: 50, args: { isLauncher: true } });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'nbplane: notebook data jobs in JupyterLab',
  autoStart: true,
  requires: [INotebookTracker, IDocumentManager],
  optional: [IFileBrowserFactory, ILauncher],
  activate
};

export default plugin;
