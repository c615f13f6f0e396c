// DOM helpers: data always goes in as text (createTextNode, setAttribute), never as HTML.

export type Child = Node | string | number | null | undefined | false | Child[];
type Attributes = Record<string, string | number | boolean | null | undefined | EventListener>;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Attributes = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (typeof value === 'function') node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

function append(node: Node, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export const $ = (id: string): HTMLElement => {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found;
};

/** Ids as the CLI shows them: their first 16 characters (the whole id on hover). */
export const ID_LENGTH = 16;

export function shortId(id: string): HTMLElement {
  return el('code', { title: id }, id.slice(0, ID_LENGTH));
}

export function when(iso: string | null | undefined): Child {
  if (!iso) return '—';
  return el('time', { datetime: iso, title: iso }, new Date(iso).toLocaleString());
}

export function seconds(value: number | null | undefined): string {
  if (value === null || value === undefined) return '—';
  if (value < 60) return `${value.toFixed(2)} s`;
  const rest = Math.round(value % 60);
  return `${Math.floor(value / 60)} min` + (rest ? ` ${rest} s` : '');
}

export function badge(status: string): HTMLElement {
  return el('span', { class: `status status-${status.replace(/[^a-z]+/g, '-')}` }, status.replace('_', ' '));
}

/** A link that opens an API answer (HTML, log, output) in a new tab. */
export function opens(href: string, text: string, label?: string): HTMLElement {
  return el('a', { href, target: '_blank', rel: 'noopener noreferrer', 'aria-label': label }, text);
}

export function table(caption: string, headings: string[], rows: HTMLElement[], empty: string): HTMLElement {
  if (rows.length === 0) return el('p', { class: 'empty' }, empty);
  return el('div', { class: 'scroll' },
    el('table', { 'aria-label': caption },
      el('thead', {}, el('tr', {}, headings.map(h => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, rows)));
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}

/** Replaces what ``node`` holds (skipping the absent parts, as el does). */
export function fill(node: HTMLElement, ...children: Child[]): void {
  node.replaceChildren();
  append(node, children);
}
