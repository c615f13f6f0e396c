// Connections (admins): named databases, buckets and others, their key names (values are
// write-only) and the users and teams they are granted to.
import { api } from './api.js';
import type { Schemas } from './api.js';
import { el, fill, table, when } from './dom.js';
import { jsonObject } from './form.js';
import { action, errorBox, failed, heading, say } from './view.js';
import type { View } from './view.js';

const KINDS: Schemas['ConnectionKind'][] = ['database', 's3', 'generic'];

export async function connectionsPage(view: View): Promise<void> {
  const connections = await api.connections();
  const problem = errorBox();
  const form = el('form', { class: 'edit', 'aria-label': 'New connection' },
    el('div', { class: 'field' }, el('label', { for: 'connection-name' }, 'Name'),
      el('input', { id: 'connection-name', name: 'name', required: true })),
    el('div', { class: 'field' }, el('label', { for: 'connection-kind' }, 'Kind'),
      el('select', { id: 'connection-kind', name: 'kind' }, KINDS.map(kind => el('option', { value: kind }, kind)))),
    el('div', { class: 'field' }, el('label', { for: 'connection-description' }, 'Description'),
      el('input', { id: 'connection-description', name: 'description' })),
    el('div', { class: 'field' }, el('label', { for: 'connection-values' }, 'Values (JSON object, write-only)'),
      el('textarea', { id: 'connection-values', name: 'values', rows: 3, placeholder: '{"url": "postgresql://…"}' })),
    el('div', { class: 'field' }, el('label', { for: 'connection-team' }, 'Grant to team (optional)'),
      el('input', { id: 'connection-team', name: 'team' })),
    el('button', { type: 'submit' }, 'Create connection'),
    problem);
  form.addEventListener('submit', async event => {
    event.preventDefault();
    problem.hidden = true;
    const data = new FormData(form);
    try {
      const values = jsonObject(data.get('values'), 'values') as Record<string, string>;
      const name = String(data.get('name')).trim();
      await api.createConnection({
        name, kind: String(data.get('kind')) as Schemas['ConnectionKind'],
        description: String(data.get('description')).trim() || null, default: false, values,
      });
      const team = String(data.get('team')).trim();
      if (team) await api.grant(name, team);
      say(`Created connection ${name}${team ? `, granted to team ${team}` : ''}.`);
      view.again();
    } catch (error) {
      failed(problem, error);
    }
  });
  fill(view.root,
    heading('Connections'),
    el('p', { class: 'help' }, 'Jobs and sessions of the users and teams a connection is granted to get its values.'),
    table('Connections', ['Connection', 'Kind', 'Keys', 'Granted to', 'Created', ''],
      connections.map(connection => el('tr', { 'data-connection': connection.name },
        el('td', {}, el('strong', {}, connection.name),
          connection.description ? el('div', { class: 'reason' }, connection.description) : null),
        el('td', {}, connection.kind),
        el('td', {}, connection.keys.join(', ') || '—'),
        el('td', {}, (connection.grants ?? []).map(grant => `${grant.kind} ${grant.name}`).join(', ') || 'nobody'),
        el('td', {}, when(connection.created_at)),
        el('td', {}, action('Delete', problem, async () => {
          await api.deleteConnection(connection.name);
          say(`Deleted connection ${connection.name}.`);
          view.again();
        }, { 'aria-label': `Delete connection ${connection.name}` })))),
      'No connections yet.'),
    el('section', { 'aria-labelledby': 'new-connection-title' },
      el('h3', { id: 'new-connection-title' }, 'New connection'), form));
}
