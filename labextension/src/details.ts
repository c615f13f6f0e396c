/**
 * One deployed job: its deployment and schedule, its executions, the log of the one chosen
 * (the latest at first) and its properties.
 */
import { Widget } from '@lumino/widgets';

import { Deployment, Execution, RemoteJobDetails, describeJob, followExecutionLog } from './api';
import { statusBadge } from './panel';

function section(title: string, ...content: Node[]): HTMLElement {
  const element = document.createElement('section');
  const heading = document.createElement('h3');
  heading.textContent = title;
  element.append(heading, ...content);
  return element;
}

function definitions(entries: [string, string][]): HTMLElement {
  const list = document.createElement('dl');
  for (const [term, value] of entries) {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = value;
    list.append(dt, dd);
  }
  return list;
}

const REFRESH_MS = 3000;
const FINAL_EXECUTION = ['completed', 'failed', 'timed_out', 'cancelled'];

export class JobDetails extends Widget {
  private timer = 0;
  private readonly log = document.createElement('pre');
  private readonly logTitle = document.createElement('div');

  constructor(
    readonly team: string,
    readonly name: string
  ) {
    super();
    this.id = `nbplane-job-${team}-${name}`;
    this.addClass('nbplane-details');
    this.title.label = `${team}/${name}`;
    this.title.closable = true;
    this.log.className = 'nbplane-run-log';
    void this.load();
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  /** Read the job again; again in a while as long as an execution is still going. */
  async load(): Promise<void> {
    window.clearTimeout(this.timer);
    let job: RemoteJobDetails;
    try {
      job = await describeJob(this.team, this.name);
    } catch (error) {
      this.node.textContent = `Cannot show ${this.team}/${this.name}: ${(error as Error).message}`;
      return;
    }
    const deployment = job.deployment;
    const deployed = deployment
      ? definitions([
          ['version', deployment.version.slice(0, 12)],
          ['schedule', deployment.schedule ? `${deployment.schedule} (${deployment.timezone})` : 'none: runs on demand'],
          ['enabled', deployment.enabled ? 'yes' : 'no'],
          ['next run', deployment.next_run_at ?? '—'],
          ['arguments', JSON.stringify(deployment.arguments)],
          ['executor', deployment.executor],
          ['retries', retryPolicy(deployment)],
          ['deployed', `${deployment.deployed_at} by ${deployment.deployed_by ?? '?'}`],
          ['reason', deployment.reason ?? '—']
        ])
      : document.createTextNode('Not deployed.');
    const refresh = document.createElement('button');
    refresh.className = 'jp-mod-styled';
    refresh.textContent = 'Refresh';
    refresh.onclick = () => void this.load();
    const properties = document.createElement('pre');
    properties.textContent = JSON.stringify(job.properties, null, 2);
    this.node.replaceChildren(
      refresh,
      section('Deployment', deployed),
      section(`Executions (${job.executions.length} of ${job.executions_total})`, this.executions(job.executions)),
      section('Log', this.logTitle, this.log),
      section('Properties', properties)
    );
    if (job.executions.length) {
      void this.showLog(job.executions[0]);
    } else {
      this.logTitle.textContent = 'No executions yet.';
    }
    if (!this.isDisposed && job.executions.some(execution => !FINAL_EXECUTION.includes(execution.status))) {
      this.timer = window.setTimeout(() => void this.load(), REFRESH_MS);
    }
  }

  private executions(executions: Execution[]): HTMLElement {
    const table = document.createElement('table');
    table.className = 'nbplane-executions';
    const head = document.createElement('tr');
    for (const title of ['id', 'status', 'started by', 'created', 'finished']) {
      const th = document.createElement('th');
      th.textContent = title;
      head.appendChild(th);
    }
    table.appendChild(head);
    for (const execution of executions) {
      const row = document.createElement('tr');
      row.title = 'Show its log';
      row.onclick = () => void this.showLog(execution);
      const status = document.createElement('td');
      status.appendChild(statusBadge(execution.status));
      const cells = [execution.id, execution.started_by ?? '', execution.created_at, execution.finished_at ?? ''].map(
        text => {
          const td = document.createElement('td');
          td.textContent = text;
          return td;
        }
      );
      row.append(cells[0], status, ...cells.slice(1));
      table.appendChild(row);
    }
    return table;
  }

  private async showLog(execution: Execution): Promise<void> {
    this.logTitle.textContent = `Execution ${execution.id} (${execution.status})${execution.reason ? `: ${execution.reason}` : ''}`;
    this.log.textContent = '';
    try {
      await followExecutionLog(this.team, this.name, execution.id, chunk => {
        this.log.textContent += chunk.text;
      });
    } catch (error) {
      this.log.textContent = `Cannot read the log: ${(error as Error).message}`;
    }
  }
}

/** A deployment's retries in words, as `nbplane job show` says them. */
export function retryPolicy(deployment: Deployment): string {
  if (!deployment.retries) {
    return 'none';
  }
  const failures = deployment.retry_on === 'any' ? 'any failure' : 'platform failures';
  return (
    `${deployment.retries} on ${failures}, the first after ${deployment.retry_delay}s, ` +
    'each wait doubling (at most 1 h)'
  );
}
