// Sessions: the caller's Jupyter servers, opened through nbplane (/sessions/{id}/). A session
// that is starting or stopping is followed through its server-sent events, not polled.
import { api, path } from './api.js';
import type { Session } from './api.js';
import { badge, el, fill, ID_LENGTH, opens, shortId, when } from './dom.js';
import type { Child } from './dom.js';
import { action, errorBox, failed, heading, say } from './view.js';
import type { View } from './view.js';

const SETTLED = new Set(['running', 'failed', 'hibernated']);
const READY_RETRY_MS = 1000; // a running server not yet answering: its events ended, look again

/** Nothing more will change by itself: a session stays as it is until someone acts. */
const settled = (session: Session): boolean =>
  session.status === 'running' ? session.ready : SETTLED.has(session.status);

function steps(session: Session): Child {
  const parts: Child[] = [];
  if (session.status === 'running') parts.push(el('div', {}, session.ready ? 'ready' : 'waiting for the server to answer'));
  const all = session.steps ?? [];
  if (all.length === 0) return parts;
  const done = all.filter(step => step.status === 'done').length;
  const summary = `${done} of ${all.length} steps done`;
  if (session.status !== 'running') parts.push(el('progress', { max: all.length, value: done, 'aria-label': summary }));
  parts.push(el('details', { open: session.status !== 'running' }, el('summary', {}, summary),
    el('ol', { class: 'steps' }, all.map(step => el('li', {}, `${step.name}: ${step.status}`)))));
  return parts;
}

export async function sessionsPage(view: View): Promise<void> {
  const [sessions, classes] = await Promise.all([api.sessions(), api.resourceClasses()]);
  const problem = errorBox();
  const rows = new Map<string, HTMLElement>();
  const tbody = el('tbody', {});
  const empty = el('p', { class: 'empty' }, 'No sessions yet: start one above.');
  const watching = new Map<string, EventSource>();
  view.signal.addEventListener('abort', () => watching.forEach(source => source.close()));

  const row = (session: Session): HTMLElement => {
    const label = session.id.slice(0, ID_LENGTH);
    const run = (name: string, method: string, suffix: string, done: string): HTMLElement =>
      action(name, problem, async () => {
        const changed = await api.sessionAction(session.id, method, suffix);
        say(`Session ${label}: ${done}.`);
        show(changed ?? { ...session, status: 'stopping' });
        watch(session.id);
      }, { 'aria-label': `${name} session ${label}` });
    const actions: HTMLElement[] = [];
    if (session.status === 'running' && session.ready && session.url) {
      actions.push(opens(session.url, 'Open', `Open session ${label} in a new tab`));
    }
    if (session.status === 'running' || session.status === 'starting') actions.push(run('Hibernate', 'POST', '/hibernate', 'hibernating'));
    if (session.status === 'hibernated' || session.status === 'failed') actions.push(run('Resume', 'POST', '/resume', 'resuming'));
    if (session.status !== 'stopping') actions.push(run('Stop', 'DELETE', '', 'stopping'));
    const resources = [session.resource_class, session.cpu && `${session.cpu} CPU`, session.memory].filter(Boolean).join(', ');
    return el('tr', { 'data-session': session.id, 'data-status': session.status },
      el('td', {}, shortId(session.id)),
      el('td', {}, resources),
      el('td', {}, badge(session.status), session.reason ? el('div', { class: 'reason' }, session.reason) : null),
      el('td', {}, steps(session)),
      el('td', {}, when(session.last_activity_at)),
      el('td', {}, session.hibernate_at ? el('div', {}, 'hibernates if idle at ', when(session.hibernate_at)) : null,
        session.delete_at ? el('div', {}, 'deleted at ', when(session.delete_at)) : null,
        session.hibernate_at || session.delete_at ? null : '—'),
      el('td', { class: 'actions' }, actions));
  };
  const show = (session: Session): void => {
    const made = row(session);
    const old = rows.get(session.id);
    if (old) old.replaceWith(made);
    else tbody.prepend(made);
    rows.set(session.id, made);
    empty.hidden = rows.size > 0;
  };
  const forget = (id: string): void => {
    rows.get(id)?.remove();
    rows.delete(id);
    empty.hidden = rows.size > 0;
  };
  /** Each change of the session comes as an event; the stream ends once it settles or is gone. */
  const watch = (id: string): void => {
    if (watching.has(id) || view.signal.aborted) return;
    const source = new EventSource(path`/api/v1/sessions/${id}/events`);
    watching.set(id, source);
    source.addEventListener('session', event => {
      const session = JSON.parse((event as MessageEvent<string>).data) as Session;
      show(session);
      if (settled(session)) {
        source.close();
        watching.delete(id);
      }
    });
    source.addEventListener('error', async () => {
      source.close(); // the stream ended (the session is gone, or settled): ask once what it is
      watching.delete(id);
      try {
        const session = await api.sessionAction(id, 'GET', '') as Session;
        show(session);
        if (!settled(session)) window.setTimeout(() => watch(id), READY_RETRY_MS);
      } catch {
        forget(id);
      }
    });
  };

  const choose = el('select', { id: 'resource-class', name: 'resource_class', required: true },
    classes.map(described => el('option', { value: described.name, selected: described.default },
      described.description ? `${described.name} — ${described.description}` : described.name)));
  const start = el('form', { class: 'inline', 'aria-label': 'Start a session' },
    el('label', { for: 'resource-class' }, 'Resource class'), choose,
    el('button', { type: 'submit', disabled: classes.length === 0 }, 'Start session'));
  start.addEventListener('submit', async event => {
    event.preventDefault();
    problem.hidden = true;
    try {
      const session = await api.startSession(choose.value);
      say(`Started session ${session.id.slice(0, ID_LENGTH)} (${session.resource_class}).`);
      show(session);
      watch(session.id);
    } catch (error) {
      failed(problem, error);
    }
  });
  sessions.forEach(show);
  fill(view.root,
    heading('Sessions'),
    el('p', { class: 'help' }, 'A session is a JupyterLab of your own on the server, opened through nbplane.'),
    start, problem,
    el('div', { class: 'scroll' }, el('table', { 'aria-label': 'Sessions' },
      el('thead', {}, el('tr', {}, ['Session', 'Resources', 'Status', 'Progress', 'Last activity', 'Culling', 'Actions']
        .map(text => el('th', { scope: 'col' }, text)))),
      tbody)),
    empty);
  empty.hidden = rows.size > 0;
  sessions.filter(session => !settled(session)).forEach(session => watch(session.id));
}
