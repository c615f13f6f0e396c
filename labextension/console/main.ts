// The nbplane console at `/`: sign in, then jobs, notebook APIs, sessions and (admins)
// connections, each page at its own address (#/jobs, #/apis/NAME, ...). Plain DOM, no
// framework; served whole by the nbplane server under its content policy (no inline code).
import { api, ApiError } from './api.js';
import type { Authenticator, Caller } from './api.js';
import { $ } from './dom.js';
import { apiExecutionPage, apiPage, apisPage } from './apis.js';
import { connectionsPage } from './connections.js';
import { executionPage, jobPage, jobsPage } from './jobs.js';
import { sessionsPage } from './sessions.js';
import { failed, say, SIGNED_OUT } from './view.js';
import type { View } from './view.js';

type Page = (view: View, ...parts: string[]) => Promise<void>;

/** Each address's page: the pattern's groups are the page's arguments. */
const ROUTES: [RegExp, Page, string][] = [
  [/^#\/jobs\/([^/]+)\/([^/]+)\/executions\/([^/]+)$/, executionPage, 'jobs'],
  [/^#\/jobs\/([^/]+)\/([^/]+)$/, jobPage, 'jobs'],
  [/^#\/jobs$/, jobsPage, 'jobs'],
  [/^#\/apis\/([^/]+)$/, apiPage, 'apis'],
  [/^#\/apis$/, apisPage, 'apis'],
  [/^#\/api-executions\/([^/]+)$/, apiExecutionPage, 'apis'],
  [/^#\/sessions$/, sessionsPage, 'sessions'],
  [/^#\/connections$/, connectionsPage, 'connections'],
];
const HOME = '#/jobs';

let caller: Caller | null = null;
let leaving: AbortController | null = null;

async function show(): Promise<void> {
  if (!caller) return;
  leaving?.abort();
  const controller = new AbortController();
  leaving = controller;
  const found = ROUTES.map(([pattern, page, section]) => ({ match: pattern.exec(location.hash), page, section }))
    .find(route => route.match);
  if (!found) {
    location.replace(HOME);
    return;
  }
  for (const link of Array.from(document.querySelectorAll<HTMLAnchorElement>('#nav a'))) {
    if (link.dataset.section === found.section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  // each visit draws into its own box: a page still loading after the user moved on draws
  // into a box no longer shown
  const root = document.createElement('div');
  $('view').replaceChildren(root);
  const view: View = { root, signal: controller.signal, again: () => void show() };
  root.setAttribute('aria-busy', 'true');
  try {
    await found.page(view, ...found.match!.slice(1).map(decodeURIComponent));
    const title = root.querySelector<HTMLElement>('h2');
    if (!controller.signal.aborted && title) {
      document.title = `${title.textContent} · nbplane`;
      title.focus({ preventScroll: true });
    }
  } catch (error) {
    if (controller.signal.aborted) return;
    const box = document.createElement('p');
    box.className = 'error';
    box.setAttribute('role', 'alert');
    root.replaceChildren(box);
    failed(box, error);
  } finally {
    root.removeAttribute('aria-busy');
  }
}

function signedIn(who: Caller): void {
  caller = who;
  $('user-name').textContent = who.user;
  $('user-teams').textContent = who.teams.length ? `(${who.teams.join(', ')})` : '';
  $('nav-connections').hidden = !who.admin;
  $('sign-in').hidden = true;
  $('loading').hidden = true;
  $('who').hidden = false;
  $('nav').hidden = false;
  $('view').hidden = false;
  if (!location.hash || location.hash === '#') location.replace(HOME); // shown on hashchange
  else void show();
}

let authenticator: Authenticator | null = null;

/** The server's authenticator's sign-in, when it has one beside tokens: /nbplane/login goes
 * through it (an OpenID provider's page, or at once for a gateway's or an application's
 * sign-in). */
async function offerSignIn(): Promise<void> {
  try {
    authenticator = await api.authenticator();
  } catch {
    authenticator = null; // the token is the way in
  }
  const offered = authenticator?.browser_login || authenticator?.request_login;
  if (offered) $('oauth-link').textContent = `sign in with ${authenticator?.provider}`;
  $('oauth').hidden = !offered;
}

function showSignIn(reason: string): void {
  caller = null;
  leaving?.abort();
  void offerSignIn();
  $('loading').hidden = true;
  $('view').hidden = true;
  $('view').replaceChildren();
  $('who').hidden = true;
  $('nav').hidden = true;
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = reason;
  say('');
}

async function signIn(event: Event): Promise<void> {
  event.preventDefault();
  const input = $('token') as HTMLInputElement;
  $('sign-in-error').textContent = '';
  try {
    const who = await api.signIn(input.value);
    input.value = '';
    signedIn(who);
  } catch (error) {
    $('sign-in-error').textContent = error instanceof Error ? error.message : String(error);
  }
}

async function signOut(): Promise<void> {
  authenticator ??= await api.authenticator().catch(() => null);
  if (authenticator?.browser_login) {
    // ends the login at the OpenID provider too, which sends the browser back here
    location.assign('/nbplane/logout');
    return;
  }
  try {
    await api.signOut();
  } finally {
    showSignIn('');
  }
}

async function main(): Promise<void> {
  $('sign-in-form').addEventListener('submit', event => void signIn(event));
  $('sign-out').addEventListener('click', () => void signOut());
  window.addEventListener('hashchange', () => void show());
  window.addEventListener(SIGNED_OUT, () => showSignIn('Your sign-in is no longer valid: sign in again.'));
  // a sign-in through the authenticator that failed comes back with its reason in the fragment
  const returned = new URLSearchParams(location.hash.slice(1)).get('error');
  if (returned !== null) history.replaceState(null, '', location.pathname);
  try {
    signedIn(await api.me());
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) showSignIn(returned ?? '');
    else showSignIn(error instanceof Error ? error.message : String(error));
  }
}

void main();
