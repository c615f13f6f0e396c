// Notebook APIs: the list, one API with a form made from its input contract to try it and its
// executions, and one execution (output, error, HTML, log). A running execution is awaited with
// the API's own long wait (the server answers when it ends), never asked for each second.
import { api, path } from './api.js';
import type { Execution } from './api.js';
import { badge, el, fill, json, opens, shortId, table, when } from './dom.js';
import { readFields, schemaFields } from './form.js';
import { errorBox, failed, heading, say, action } from './view.js';
import type { View } from './view.js';

const ACTIVE = new Set(['queued', 'running']);
const WAIT_SECONDS = 30;

const apiHref = (name: string): string => `#/apis/${encodeURIComponent(name)}`;
const executionHref = (id: string): string => `#/api-executions/${encodeURIComponent(id)}`;

export async function apisPage(view: View): Promise<void> {
  const notebooks = await api.notebooks();
  fill(view.root,
    heading('Notebook APIs'),
    el('p', { class: 'help' }, 'Each notebook below is a REST API: its contract says what it takes and returns. Open one to try it.'),
    table('Notebook APIs', ['Notebook', 'Status', 'Takes', 'Engine'],
      notebooks.map(notebook => el('tr', { 'data-api': notebook.name },
        el('td', {}, el('a', { href: apiHref(notebook.name) }, notebook.name)),
        el('td', {}, badge(notebook.status), notebook.reason ? el('div', { class: 'reason' }, notebook.reason) : null),
        el('td', {}, Object.keys(notebook.input?.properties ?? {}).join(', ') || '—'),
        el('td', {}, notebook.engine ?? '—'))),
      'No notebook APIs are offered to you.'));
}

function executionRows(items: Execution[]): HTMLElement[] {
  return items.map(execution => el('tr', { 'data-execution': execution.id },
    el('td', {}, el('a', { href: executionHref(execution.id) }, shortId(execution.id))),
    el('td', {}, badge(execution.status)),
    el('td', {}, el('code', {}, JSON.stringify(execution.parameters))),
    el('td', {}, execution.created_by ?? '—'),
    el('td', {}, when(execution.created_at)),
    el('td', { class: 'reason' }, execution.reason ?? '')));
}

export async function apiPage(view: View, name: string): Promise<void> {
  const [notebook, executions] = await Promise.all([api.notebook(name), api.executions(name)]);
  const problem = errorBox();
  const form = el('form', { class: 'edit', 'aria-label': `Try ${name}` },
    schemaFields(notebook.input, 'parameter'),
    el('button', { type: 'submit', disabled: notebook.status !== 'ok' }, 'Run'),
    problem);
  form.addEventListener('submit', async event => {
    event.preventDefault();
    problem.hidden = true;
    try {
      const started = await api.submit(name, readFields(form));
      say(`Started ${name}: execution ${started.id.slice(0, 16)}.`);
      location.hash = executionHref(started.id);
    } catch (error) {
      failed(problem, error);
    }
  });
  fill(view.root,
    el('p', { class: 'crumbs' }, el('a', { href: '#/apis' }, 'Notebook APIs')),
    heading(name),
    notebook.reason ? el('p', { class: 'error' }, notebook.reason) : null,
    el('section', { 'aria-labelledby': 'try-title' },
      el('h3', { id: 'try-title' }, 'Try it'),
      notebook.input?.description ? el('p', { class: 'help' }, notebook.input.description) : null,
      form,
      el('details', {}, el('summary', {}, 'Contract'),
        el('h4', {}, 'Input'), el('pre', {}, json(notebook.input)),
        el('h4', {}, 'Output'), el('pre', {}, json(notebook.output)))),
    el('section', { 'aria-labelledby': 'api-executions-title' },
      el('h3', { id: 'api-executions-title' }, 'Executions'),
      table('Executions', ['Execution', 'Status', 'Parameters', 'By', 'Created', 'Reason'],
        executionRows(executions.items), 'No executions yet.')));
}

/** Why it failed: the message first, then where (cell, line, field...), the traceback folded. */
function failure(error: Record<string, unknown>, reason: string | null | undefined): HTMLElement {
  const { message, traceback, ...where } = error;
  const facts = Object.entries(where).filter(([, value]) =>
    value !== null && value !== undefined && typeof value !== 'object');
  return el('section', { class: 'failure', 'aria-labelledby': 'error-title' },
    el('h3', { id: 'error-title' }, 'Error'),
    el('p', {}, String(message ?? reason ?? '')),
    facts.length ? el('dl', { class: 'facts' }, facts.map(([name, value]) =>
      [el('dt', {}, name.replace(/_/g, ' ')), el('dd', {}, String(value))])) : null,
    traceback ? el('details', {}, el('summary', {}, 'Traceback'), el('pre', {}, String(traceback))) : null);
}

export async function apiExecutionPage(view: View, id: string): Promise<void> {
  const base = path`/api/v1/executions/${id}`;
  const problem = errorBox();
  const body = el('div', {});
  let execution = await api.execution(id);
  fill(view.root,
    el('p', { class: 'crumbs' }, el('a', { href: '#/apis' }, 'Notebook APIs'), ' / ',
      el('a', { href: apiHref(execution.notebook) }, execution.notebook)),
    heading('Execution ', shortId(id)),
    problem,
    body);
  for (;;) {
    const active = ACTIVE.has(execution.status);
    const log = active ? null : await fetch(`${base}/logs`, { credentials: 'same-origin' })
      .then(answer => answer.ok ? answer.text() : '');
    const error = execution.error as Record<string, unknown> | null | undefined;
    fill(body,
      el('dl', { class: 'facts', id: 'execution', 'data-status': execution.status },
        el('dt', {}, 'Status'), el('dd', {}, badge(execution.status),
          execution.reason ? el('span', { class: 'reason' }, ` — ${execution.reason}`) : ''),
        el('dt', {}, 'Notebook'), el('dd', {}, execution.notebook),
        el('dt', {}, 'Parameters'), el('dd', {}, el('code', {}, JSON.stringify(execution.parameters))),
        el('dt', {}, 'By'), el('dd', {}, execution.created_by ?? '—'),
        el('dt', {}, 'Created'), el('dd', {}, when(execution.created_at)),
        el('dt', {}, 'Finished'), el('dd', {}, when(execution.finished_at))),
      el('div', { class: 'actions' },
        active ? action('Cancel', problem, async () => {
          await api.cancelExecution(id);
        }) : null,
        active ? null : opens(`${base}/html`, 'Executed notebook (HTML)', 'Executed notebook as HTML'),
        active ? null : opens(`${base}/notebook`, 'Notebook (.ipynb)')),
      execution.has_output
        ? el('section', { 'aria-labelledby': 'output-title' },
          el('h3', { id: 'output-title' }, 'Output'), el('pre', { id: 'output' }, json(execution.output)))
        : null,
      error ? failure(error, execution.reason) : null,
      active ? el('p', { class: 'empty' }, `${execution.status}…`)
        : el('section', { 'aria-labelledby': 'log-title' },
          el('h3', { id: 'log-title' }, 'Log'), el('pre', { class: 'log' }, log || '(nothing printed)')));
    if (!active || view.signal.aborted) return;
    execution = await api.execution(id, WAIT_SECONDS);
    if (view.signal.aborted) return;
  }
}
