/**
 * The side panel: the user's deployed jobs with their latest execution's status, refreshed
 * while the panel is visible.
 */

import { LoginStatus, RemoteJob, RemoteJobs, listJobs, loginStatus } from './api';
import { describeSchedule } from './format';
import { RefreshingWidget } from './refreshing';

function cell(text: string, className = ''): HTMLTableCellElement {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) {
    td.className = className;
  }
  return td;
}

export function statusBadge(status: string): HTMLElement {
  const badge = document.createElement('span');
  badge.className = `nbplane-badge nbplane-status-${status.replace(/\s+/g, '-')}`;
  badge.textContent = status;
  return badge;
}

export class JobsPanel extends RefreshingWidget {
  /** Counts refreshes: an answer of an older refresh (e.g. from before a logout) is dropped. */
  private readonly header = document.createElement('div');
  private readonly message = document.createElement('div');
  private readonly table = document.createElement('table');

  constructor(
    private readonly openDetails: (team: string, name: string) => void,
    private readonly login: () => void,
    openPage: () => void = () => undefined
  ) {
    super();
    this.id = 'nbplane-jobs-panel';
    this.addClass('nbplane-panel');
    this.title.caption = 'nbplane jobs';
    this.header.className = 'nbplane-panel-header';
    this.message.className = 'nbplane-panel-message';
    this.table.className = 'nbplane-jobs-table';
    const title = document.createElement('h2');
    title.textContent = 'nbplane jobs';
    const refresh = document.createElement('button');
    refresh.className = 'jp-mod-styled';
    refresh.textContent = 'Refresh';
    refresh.onclick = () => void this.refresh();
    const page = document.createElement('button');
    page.className = 'jp-mod-styled';
    page.textContent = 'Open jobs page';
    page.title = 'Local run history and deployed jobs, full width, with their actions';
    page.onclick = openPage;
    this.node.append(title, this.header, refresh, page, this.message, this.table);
  }

  protected async load(current: () => boolean): Promise<void> {
    try {
      const status = await loginStatus();
      if (!current()) {
        return;
      }
      this.showStatus(status);
      if (status.logged_in) {
        const jobs = await listJobs();
        if (!current()) {
          return;
        }
        this.showJobs(jobs);
      } else {
        this.table.replaceChildren();
      }
    } catch (error) {
      if (current()) {
        this.message.textContent = (error as Error).message;
      }
    }
  }

  private showStatus(status: LoginStatus): void {
    this.header.replaceChildren();
    if (status.logged_in) {
      this.header.textContent = `${status.user} at ${status.server_url}`;
      this.message.textContent = '';
      return;
    }
    this.message.textContent = status.message ?? 'Not logged in to an nbplane server.';
    const button = document.createElement('button');
    button.className = 'jp-mod-styled jp-mod-accept';
    button.textContent = 'Log in';
    button.onclick = () => this.login();
    this.header.appendChild(button);
  }

  private showJobs(answer: RemoteJobs): void {
    const head = document.createElement('tr');
    for (const title of ['job', 'latest']) {
      const th = document.createElement('th');
      th.textContent = title;
      head.appendChild(th);
    }
    const rows = answer.jobs.map(job => this.row(job));
    this.table.replaceChildren(head, ...rows);
    if (!answer.jobs.length) {
      this.message.textContent = `No jobs yet in ${answer.teams.join(', ') || 'your teams'}: deploy one (nbplane → Deploy).`;
    }
  }

  private row(job: RemoteJob): HTMLTableRowElement {
    const row = document.createElement('tr');
    row.className = 'nbplane-job-row';
    row.dataset.job = `${job.team}/${job.name}`;
    row.title = 'Open the job details';
    row.onclick = () => this.openDetails(job.team, job.name);
    const deployment = job.deployment;
    const schedule = describeSchedule(deployment) + (deployment?.schedule && !deployment.enabled ? ', paused' : '');
    const latest = document.createElement('td');
    const last = job.last_executions[0];
    latest.appendChild(statusBadge(last ? last.status : 'no runs'));
    latest.className = 'nbplane-job-latest';
    // Compact: the schedule under the name, so the status column keeps its width.
    const name = cell(`${job.team}/${job.name}`, 'nbplane-job-name');
    name.title = `${job.team}/${job.name}: ${schedule}`;
    const when = document.createElement('div');
    when.className = 'nbplane-job-schedule';
    when.textContent = schedule;
    name.appendChild(when);
    row.append(name, latest);
    return row;
  }
}
