// Jobs of the caller's teams: the list, one job (its deployment, schedule, versions and
// executions, with pause, resume, edit and run now) and one execution (steps, the error at
// its step, the live log followed as the server streams it).
import { api, follow, path } from './api.js';
import type { Job, JobExecution, Step } from './api.js';
import { badge, el, fill, json, opens, seconds, shortId, table, when } from './dom.js';
import type { Child } from './dom.js';
import { jsonObject } from './form.js';
import { action, errorBox, failed, heading, say } from './view.js';
import type { View } from './view.js';

const ACTIVE = new Set(['queued', 'running', 'retrying']);
const STEPS_REFRESH_MS = 300; // a burst of log lines asks for the steps once

export const jobHref = (team: string, job: string): string =>
  `#/jobs/${encodeURIComponent(team)}/${encodeURIComponent(job)}`;
export const executionHref = (execution: JobExecution): string =>
  `${jobHref(execution.team, execution.job)}/executions/${encodeURIComponent(execution.id)}`;

function schedule(job: Job): Child {
  const deployment = job.deployment;
  if (!deployment) return '—';
  if (!deployment.schedule) return 'manual only';
  return [el('code', {}, deployment.schedule), ` (${deployment.timezone})`];
}

function state(job: Job): HTMLElement {
  if (!job.deployment) return badge('not deployed');
  return badge(job.deployment.enabled ? 'active' : 'paused');
}

function lastExecution(job: Job): Child {
  const last = job.last_executions?.[0];
  if (!last) return '—';
  return [badge(last.status), ' ', el('a', { href: executionHref(last) }, when(last.created_at))];
}

export async function jobsPage(view: View): Promise<void> {
  const teams = await api.teams();
  const lists = await Promise.all(teams.map(team => api.jobs(team.name)));
  const jobs = lists.flat();
  fill(view.root,
    heading('Jobs'),
    el('p', { class: 'help' }, `Jobs of ${teams.length === 1 ? 'your team' : 'your teams'}: `,
      teams.map(team => team.name).join(', ') || 'none', '. A job is deployed with ',
      el('code', {}, 'nbplane job deploy'), ' or from JupyterLab; here you run, pause and reschedule it.'),
    table('Jobs', ['Job', 'Team', 'Version', 'Schedule', 'State', 'Next run', 'Last execution'],
      jobs.map(job => el('tr', { 'data-job': `${job.team}/${job.name}` },
        el('td', {}, el('a', { href: jobHref(job.team, job.name) }, job.name)),
        el('td', {}, job.team),
        el('td', {}, job.deployment ? shortId(job.deployment.version) : '—'),
        el('td', {}, schedule(job)),
        el('td', {}, state(job)),
        el('td', {}, when(job.deployment?.next_run_at)),
        el('td', {}, lastExecution(job)))),
      'No jobs in your teams yet.'));
}

function executionRows(items: JobExecution[]): HTMLElement[] {
  return items.map(execution => el('tr', { 'data-execution': execution.id },
    el('td', {}, el('a', { href: executionHref(execution) }, shortId(execution.id))),
    el('td', {}, badge(execution.status)),
    el('td', {}, execution.started_by),
    el('td', {}, when(execution.created_at)),
    el('td', {}, when(execution.finished_at)),
    el('td', { class: 'reason' }, execution.reason ?? '')));
}

function timeZones(): string[] {
  const intl = Intl as unknown as { supportedValuesOf?: (key: string) => string[] };
  return intl.supportedValuesOf ? ['UTC', ...intl.supportedValuesOf('timeZone')] : ['UTC'];
}

/** Run the deployed version once with arguments of this run only (the deployment keeps its). */
function runOnceForm(job: Job): HTMLElement {
  const problem = errorBox();
  const form = el('form', { class: 'edit', 'aria-label': 'Run once with other arguments' },
    el('div', { class: 'field' },
      el('label', { for: 'once-arguments' }, 'Arguments of this run only (JSON object)'),
      el('textarea', { id: 'once-arguments', name: 'arguments', rows: 3 },
        json(job.deployment?.arguments ?? {}))),
    el('button', { type: 'submit' }, 'Run with these arguments'),
    problem);
  form.addEventListener('submit', async event => {
    event.preventDefault();
    problem.hidden = true;
    try {
      const started = await api.runJob(job.team, job.name, jsonObject(new FormData(form).get('arguments'), 'arguments'));
      say(`Started execution ${started.id.slice(0, 16)} of ${job.team}/${job.name}.`);
      location.hash = executionHref(started);
    } catch (error) {
      failed(problem, error);
    }
  });
  return form;
}

function editForm(view: View, job: Job): HTMLElement {
  const deployment = job.deployment!;
  const problem = errorBox();
  const form = el('form', { class: 'edit', 'aria-label': 'Schedule and arguments' },
    el('div', { class: 'field' },
      el('label', { for: 'schedule' }, 'Schedule (cron)'),
      el('input', { id: 'schedule', name: 'schedule', value: deployment.schedule ?? '',
        placeholder: '0 6 * * *', 'aria-describedby': 'schedule-help' }),
      el('p', { class: 'help', id: 'schedule-help' },
        'Five cron fields: minute hour day month weekday. Empty: it runs only when started.')),
    el('div', { class: 'field' },
      el('label', { for: 'timezone' }, 'Time zone'),
      el('input', { id: 'timezone', name: 'timezone', value: deployment.timezone, list: 'zones',
        required: true }),
      el('datalist', { id: 'zones' }, timeZones().map(zone => el('option', { value: zone })))),
    el('div', { class: 'field' },
      el('label', { for: 'arguments' }, 'Arguments (JSON object)'),
      el('textarea', { id: 'arguments', name: 'arguments', rows: 4 }, json(deployment.arguments))),
    el('button', { type: 'submit' }, 'Save'),
    problem);
  form.addEventListener('submit', async event => {
    event.preventDefault();
    problem.hidden = true;
    const data = new FormData(form);
    try {
      const schedule = String(data.get('schedule')).trim();
      await api.updateDeployment(job.team, job.name, {
        schedule: schedule || null,
        timezone: String(data.get('timezone')).trim(),
        arguments: jsonObject(data.get('arguments'), 'arguments'),
      });
      say(`Saved the schedule and arguments of ${job.team}/${job.name}.`);
      view.again();
    } catch (error) {
      failed(problem, error);
    }
  });
  return form;
}

export async function jobPage(view: View, team: string, name: string): Promise<void> {
  const [job, versions, executions] = await Promise.all([
    api.job(team, name), api.versions(team, name), api.jobExecutions(team, name),
  ]);
  const deployment = job.deployment;
  const problem = errorBox();
  const actions: HTMLElement[] = [];
  if (deployment) {
    actions.push(action(deployment.enabled ? 'Pause' : 'Resume', problem, async () => {
      await api.updateDeployment(team, name, { enabled: !deployment.enabled });
      say(`${team}/${name} ${deployment.enabled ? 'paused: its schedule starts nothing' : 'resumed'}.`);
      view.again();
    }));
    actions.push(action('Run now', problem, async () => {
      const started = await api.runJob(team, name);
      say(`Started execution ${started.id.slice(0, 16)} of ${team}/${name}.`);
      location.hash = executionHref(started);
    }));
  }
  fill(view.root,
    el('p', { class: 'crumbs' }, el('a', { href: '#/jobs' }, 'Jobs'), ' / ', team),
    heading(`${team}/${name}`),
    job.description ? el('p', {}, job.description) : null,
    el('section', { 'aria-labelledby': 'deployment-title' },
      el('h3', { id: 'deployment-title' }, 'Deployment'),
      deployment
        ? el('dl', { class: 'facts' },
          el('dt', {}, 'State'), el('dd', {}, state(job), deployment.reason ? ` — ${deployment.reason}` : ''),
          el('dt', {}, 'Version'), el('dd', {}, shortId(deployment.version)),
          el('dt', {}, 'Schedule'), el('dd', {}, schedule(job)),
          el('dt', {}, 'Next run'), el('dd', {}, when(deployment.next_run_at)),
          el('dt', {}, 'Arguments'), el('dd', {}, el('code', {}, JSON.stringify(deployment.arguments))),
          el('dt', {}, 'Timeout'), el('dd', {}, seconds(deployment.timeout)),
          el('dt', {}, 'Deployed'), el('dd', {}, when(deployment.deployed_at),
            deployment.deployed_by ? ` by ${deployment.deployed_by}` : ''))
        : el('p', { class: 'empty' }, 'Not deployed: deploy a version with ',
          el('code', {}, `nbplane job deploy`), ' or from JupyterLab.'),
      el('div', { class: 'actions' }, actions),
      problem,
      deployment ? editForm(view, job) : null,
      deployment ? runOnceForm(job) : null),
    el('section', { 'aria-labelledby': 'executions-title' },
      el('h3', { id: 'executions-title' }, 'Executions'),
      table('Executions', ['Execution', 'Status', 'Started by', 'Created', 'Finished', 'Reason'],
        executionRows(executions.items), 'No executions yet.')),
    el('section', { 'aria-labelledby': 'versions-title' },
      el('h3', { id: 'versions-title' }, 'Versions'),
      table('Versions', ['Version', 'Steps', 'Uploaded', 'By', ''],
        versions.map(version => el('tr', {},
          el('td', {}, shortId(version.id)),
          el('td', {}, version.steps.join(', ')),
          el('td', {}, when(version.created_at)),
          el('td', {}, version.created_by ?? '—'),
          el('td', {}, version.id === deployment?.version ? badge('deployed')
            : deployment ? action('Deploy', problem, async () => {
              await api.updateDeployment(team, name, { version: version.id });
              say(`${team}/${name} now runs version ${version.id.slice(0, 16)}.`);
              view.again();
            }, { 'aria-label': `Deploy version ${version.id.slice(0, 16)}` }) : ''))),
        'No versions uploaded.')));
}

function place(error: Record<string, unknown>, step: Step): string {
  const file = String(error.file ?? step.file);
  const cell = error.cell ?? step.cell_number;
  const line = error.line;
  return [file, cell !== null && cell !== undefined ? `cell ${cell}` : null,
    line !== null && line !== undefined ? `line ${line}` : null].filter(Boolean).join(', ');
}

function failure(execution: JobExecution): HTMLElement | null {
  const step = (execution.steps ?? []).find(candidate => candidate.status === 'failed' && candidate.error);
  if (!step || !step.error) return null;
  const error = step.error as Record<string, unknown>;
  return el('section', { class: 'failure', 'aria-labelledby': 'failure-title' },
    el('h3', { id: 'failure-title' }, `Step ${step.position + 1} (${step.name}) failed at `,
      el('span', { class: 'place' }, place(error, step))),
    el('p', {}, String(error.summary ?? error.message ?? step.reason ?? '')),
    error.line_text ? el('pre', { class: 'code' }, `${error.line}: ${String(error.line_text)}`) : null,
    error.statement ? el('pre', { class: 'code' }, String(error.statement)) : null,
    error.traceback ? el('details', {}, el('summary', {}, 'Traceback'),
      el('pre', {}, String(error.traceback))) : null);
}

function stepRows(execution: JobExecution): HTMLElement[] {
  return (execution.steps ?? []).map(step => el('tr', { 'data-step': step.position + 1, 'data-status': step.status },
    el('td', {}, String(step.position + 1)),
    el('td', {}, step.name),
    el('td', {}, step.cell_number !== null && step.cell_number !== undefined
      ? `${step.file}, cell ${step.cell_number}` : step.file),
    el('td', {}, badge(step.status)),
    el('td', {}, seconds(step.duration)),
    el('td', { class: 'reason' }, String(step.error?.summary ?? step.reason ?? ''))));
}

export async function executionPage(view: View, team: string, job: string, id: string): Promise<void> {
  const base = path`/api/v1/teams/${team}/jobs/${job}/executions/${id}`;
  const summary = el('div', {});
  const log = el('pre', { id: 'log', class: 'log', tabindex: 0, 'aria-label': 'Log' });
  const problem = errorBox();
  fill(view.root,
    el('p', { class: 'crumbs' }, el('a', { href: '#/jobs' }, 'Jobs'), ' / ',
      el('a', { href: jobHref(team, job) }, `${team}/${job}`)),
    heading('Execution ', shortId(id)),
    problem,
    summary,
    el('section', { 'aria-labelledby': 'log-title' },
      el('h3', { id: 'log-title' }, 'Log'), log));

  const draw = (execution: JobExecution): void => {
    const active = ACTIVE.has(execution.status);
    fill(summary,
      el('dl', { class: 'facts', id: 'execution', 'data-status': execution.status },
        el('dt', {}, 'Status'), el('dd', {}, badge(execution.status),
          execution.reason ? el('span', { class: 'reason' }, ` — ${execution.reason}`) : ''),
        el('dt', {}, 'Version'), el('dd', {}, shortId(execution.version)),
        el('dt', {}, 'Started by'), el('dd', {}, execution.started_by),
        el('dt', {}, 'Arguments'), el('dd', {}, el('code', {}, JSON.stringify(execution.arguments))),
        el('dt', {}, 'Created'), el('dd', {}, when(execution.created_at)),
        el('dt', {}, 'Finished'), el('dd', {}, when(execution.finished_at))),
      el('div', { class: 'actions' },
        (execution.steps ?? []).length ? opens(`${base}/html`, 'Executed notebooks (HTML)',
          'Executed notebooks of this execution as HTML') : null,
        opens(`${base}/logs`, 'Log as text'),
        active ? action('Cancel', problem, async () => {
          draw(await api.cancelJobExecution(team, job, id));
        }) : null),
      failure(execution),
      el('section', { 'aria-labelledby': 'steps-title' },
        el('h3', { id: 'steps-title' }, 'Steps'),
        table('Steps', ['#', 'Step', 'Where', 'Status', 'Duration', 'Note'], stepRows(execution),
          active ? 'No step has finished yet.' : 'No steps ran.')));
  };

  let pending: number | null = null;
  const refresh = async (): Promise<void> => {
    pending = null;
    try {
      if (!view.signal.aborted) draw(await api.jobExecution(team, job, id));
    } catch (error) {
      failed(problem, error);
    }
  };
  await refresh();
  // The log streams until the execution ends; each burst of it may be a step that finished.
  try {
    await follow(`${base}/logs?follow=true`, view.signal, text => {
      log.append(text);
      log.scrollTop = log.scrollHeight;
      if (pending === null) pending = window.setTimeout(refresh, STEPS_REFRESH_MS);
    });
  } catch (error) {
    if (view.signal.aborted) return;
    failed(problem, error);
  }
  if (!view.signal.aborted) await refresh();
}
