/**
 * The jobs page, full width in the main area (like jupyter-scheduler's "Notebook Jobs"): the
 * local run history of the jobs under the Jupyter root, and the deployed jobs of the nbplane
 * server logged in to. Every action comes from its row, so nobody types a team or job name.
 */
import { Notification } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';

import {
  HistoryRun,
  RemoteJob,
  describeLocalJob,
  listHistory,
  listJobs,
  loginStatus,
  setScheduleEnabled
} from './api';
import { CommandIDs } from './commands';
import { describeSchedule, formatDuration, formatTime } from './format';
import { nbplaneIcon } from './icons';
import { Lab } from './lab';
import { statusBadge } from './panel';
import { RefreshingWidget } from './refreshing';

type Tab = 'local' | 'deployed';

function cell(content: string | Node, className = ''): HTMLTableCellElement {
  const td = document.createElement('td');
  if (typeof content === 'string') {
    td.textContent = content;
    td.title = content;
  } else {
    td.appendChild(content);
  }
  if (className) {
    td.className = className;
  }
  return td;
}

function header(titles: string[]): HTMLTableRowElement {
  const row = document.createElement('tr');
  for (const title of titles) {
    const th = document.createElement('th');
    th.textContent = title;
    row.appendChild(th);
  }
  return row;
}

/** A row's action: a small button that does not also open the row. */
function action(label: string, run: () => Promise<unknown> | void, title = ''): HTMLButtonElement {
  const button = document.createElement('button');
  button.className = 'jp-mod-styled nbplane-row-action';
  button.textContent = label;
  button.title = title || label;
  button.onclick = event => {
    event.stopPropagation();
    Promise.resolve(run()).catch((error: Error) => Notification.error(error.message, { autoClose: 8000 }));
  };
  return button;
}

export class JobsPage extends RefreshingWidget {
  private tab: Tab = 'local';
  private readonly tabs = document.createElement('div');
  private readonly local = document.createElement('section');
  private readonly deployed = document.createElement('section');

  constructor(private readonly lab: Lab) {
    super();
    this.id = 'nbplane-jobs-page';
    this.addClass('nbplane-jobs-page');
    this.title.label = 'nbplane jobs';
    this.title.closable = true;
    const title = document.createElement('h2');
    title.textContent = 'nbplane jobs';
    this.tabs.className = 'nbplane-tabs';
    this.tabs.setAttribute('role', 'tablist');
    const refresh = document.createElement('button');
    refresh.className = 'jp-mod-styled';
    refresh.textContent = 'Refresh';
    refresh.onclick = () => void this.refresh();
    const bar = document.createElement('div');
    bar.className = 'nbplane-jobs-page-bar';
    bar.append(this.tabs, refresh);
    this.local.className = 'nbplane-local-runs';
    this.deployed.className = 'nbplane-deployed-jobs';
    this.node.append(title, bar, this.local, this.deployed);
    this.showTab('local');
  }

  /** Show a tab: 'local' runs or 'deployed' jobs. */
  showTab(tab: Tab): void {
    this.tab = tab;
    const labels: [Tab, string][] = [
      ['local', 'Local runs'],
      ['deployed', 'Deployed jobs']
    ];
    this.tabs.replaceChildren(
      ...labels.map(([key, label]) => {
        const button = document.createElement('button');
        button.className = 'nbplane-tab' + (key === tab ? ' nbplane-tab-current' : '');
        button.setAttribute('role', 'tab');
        button.setAttribute('aria-selected', String(key === tab));
        button.textContent = label;
        button.onclick = () => this.showTab(key);
        return button;
      })
    );
    this.local.hidden = tab !== 'local';
    this.deployed.hidden = tab !== 'deployed';
  }

  protected async load(current: () => boolean): Promise<void> {
    const [history, remote] = await Promise.all([this.readHistory(), this.readDeployed()]);
    if (current()) {
      this.local.replaceChildren(...history);
      this.deployed.replaceChildren(...remote);
      this.showTab(this.tab);
    }
  }

  private async readHistory(): Promise<Node[]> {
    let runs: HistoryRun[];
    try {
      runs = (await listHistory()).runs;
    } catch (error) {
      return [message(`Cannot read the local runs: ${(error as Error).message}`)];
    }
    if (!runs.length) {
      return [message('No runs yet of the jobs under this folder: run one (nbplane → Run job).')];
    }
    const table = document.createElement('table');
    table.className = 'nbplane-page-table nbplane-history';
    table.append(
      header(['job', 'run', 'status', 'started', 'duration', 'failing step', '']),
      ...runs.map(run => this.historyRow(run))
    );
    return [table];
  }

  private historyRow(run: HistoryRun): HTMLTableRowElement {
    const row = document.createElement('tr');
    row.className = 'nbplane-history-row';
    row.dataset.directory = run.directory;
    row.dataset.number = String(run.number);
    const failing = run.failing_step;
    const failure = failing ? [failing.name, failing.summary?.split('\n')[0]].filter(Boolean).join(': ') : '';
    const status = statusBadge(run.status);
    const actions = document.createElement('span');
    actions.className = 'nbplane-row-actions';
    actions.append(
      action('Run again', () => this.runAgain(run), `Run ${run.directory} again with ${JSON.stringify(run.arguments)}`),
      action('Open notebook', () => this.openNotebook(run), 'Open the failing step\'s notebook, else the job\'s first')
    );
    row.append(
      cell(run.directory || '(the Jupyter root)', 'nbplane-job-name'),
      cell(`${run.number}${run.resumed ? ' (resumed)' : ''}`),
      cell(status),
      cell(formatTime(run.started_at)),
      cell(formatDuration(run.duration)),
      this.failureCell(failure, failing?.message ?? failure),
      cell(actions)
    );
    return row;
  }

  /** The failing step and its error in short; the whole message on hover. */
  private failureCell(text: string, message: string): HTMLTableCellElement {
    const td = cell(text, 'nbplane-failing-step');
    td.title = message;
    return td;
  }

  private async runAgain(run: HistoryRun): Promise<void> {
    await this.lab.commands.execute(CommandIDs.runJob, {
      directory: run.directory,
      arguments: JSON.stringify(run.arguments)
    });
  }

  private async openNotebook(run: HistoryRun): Promise<void> {
    let file = run.failing_step?.file;
    if (!file?.endsWith('.ipynb')) {
      const job = await describeLocalJob(run.directory);
      file = job.steps.find(step => step.kind === 'notebook')?.file ?? job.steps[0]?.file;
    }
    if (!file) {
      throw new Error(`${run.directory} has no step file left to open`);
    }
    const path = PathExt.join(run.directory, file);
    if (file.endsWith('.ipynb')) {
      await this.lab.openNotebook(path);
    } else {
      await this.lab.commands.execute('docmanager:open', { path });
    }
  }

  private async readDeployed(): Promise<Node[]> {
    try {
      const status = await loginStatus();
      if (!status.logged_in) {
        const login = document.createElement('button');
        login.className = 'jp-mod-styled jp-mod-accept';
        login.textContent = 'Log in';
        login.onclick = () => void this.lab.commands.execute(CommandIDs.login);
        return [message(status.message ?? 'Not logged in to an nbplane server.'), login];
      }
      const answer = await listJobs();
      if (!answer.jobs.length) {
        return [message(`No jobs yet in ${answer.teams.join(', ') || 'your teams'}: deploy one (nbplane → Deploy job).`)];
      }
      const table = document.createElement('table');
      table.className = 'nbplane-page-table nbplane-deployed';
      table.append(
        header(['team', 'job', 'schedule', 'enabled', 'last execution', '']),
        ...answer.jobs.map(job => this.deployedRow(job))
      );
      return [message(`${answer.user} at ${status.server_url}`), table];
    } catch (error) {
      return [message(`Cannot read the deployed jobs: ${(error as Error).message}`)];
    }
  }

  private deployedRow(job: RemoteJob): HTMLTableRowElement {
    const row = document.createElement('tr');
    row.className = 'nbplane-job-row';
    row.dataset.job = `${job.team}/${job.name}`;
    row.title = 'Open the job details';
    const args = { team: job.team, name: job.name };
    const run = (command: string) => () => this.lab.commands.execute(command, args);
    row.onclick = run(CommandIDs.details);
    const deployment = job.deployment;
    const last = job.last_executions[0];
    const latest = document.createElement('span');
    latest.append(statusBadge(last ? last.status : 'no runs'));
    if (last) {
      latest.append(` ${formatTime(last.finished_at ?? last.started_at ?? last.created_at)}`);
    }
    const actions = document.createElement('span');
    actions.className = 'nbplane-row-actions';
    actions.append(action('Execute', run(CommandIDs.execute), 'Run the deployed version now'));
    actions.append(action('Details', run(CommandIDs.details), 'Deployment, executions and their logs'));
    if (deployment?.schedule) {
      const enabled = deployment.enabled;
      actions.append(
        action(enabled ? 'Pause' : 'Resume', async () => {
          await setScheduleEnabled(job.team, job.name, !enabled);
          Notification.success(`${job.team}/${job.name}: schedule ${enabled ? 'paused' : 'resumed'}.`, {
            autoClose: 4000
          });
          await this.refresh();
        })
      );
    }
    actions.append(action('Download', run(CommandIDs.download), 'The deployed version, as a zip'));
    actions.append(
      action('Delete', async () => {
        await this.lab.commands.execute(CommandIDs.remove, args);
        await this.refresh();
      })
    );
    row.append(
      cell(job.team),
      cell(job.name, 'nbplane-job-name'),
      cell(describeSchedule(deployment)),
      cell(!deployment ? '' : !deployment.schedule ? '—' : deployment.enabled ? 'yes' : 'paused'),
      cell(latest),
      cell(actions)
    );
    return row;
  }
}

function message(text: string): HTMLElement {
  const element = document.createElement('p');
  element.className = 'nbplane-panel-message';
  element.textContent = text;
  return element;
}

/** The jobs page command; one page at a time, opened again when closed. */
export function activateJobsPage(lab: Lab): void {
  let page: JobsPage | null = null;
  lab.commands.addCommand(CommandIDs.jobsPage, {
    label: args => (args.isLauncher ? 'nbplane jobs' : 'Jobs page'),
    caption: 'Local run history and deployed jobs, with their actions',
    icon: nbplaneIcon,
    execute: args => {
      if (!page || page.isDisposed) {
        page = new JobsPage(lab);
        lab.showInMain(page);
      } else {
        lab.shell.activateById(page.id);
        void page.refresh();
      }
      if (args.tab === 'deployed' || args.tab === 'local') {
        page.showTab(args.tab);
      }
    }
  });
}
