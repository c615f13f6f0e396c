/**
 * Login to an nbplane server (a token, or OAuth in another tab) and logout. The token stays on
 * the Jupyter server; the jobs panel is refreshed to show who is logged in.
 */
import { Notification } from '@jupyterlab/apputils';

import { LoginStatus, logIn, logOut, loginStatus, startOAuth } from './api';
import { CommandIDs } from './commands';
import { Values, submitForm, textOf } from './form';
import { Lab } from './lab';
import { JobsPanel } from './panel';
import { Checked } from './validation';

const OAUTH_POLL_MS = 2000;
const OAUTH_WAIT_MS = 10 * 60 * 1000;
const OAUTH = 'Log in with OAuth';
const SERVER_URL = /^https?:\/\/\S+$/;

export function activateAuth(lab: Lab, jobsPanel: JobsPanel): void {
  const { commands } = lab;

  /** The provider's page is open in another tab; the status tells when it is done. */
  const waitForOAuth = async (): Promise<void> => {
    const deadline = Date.now() + OAUTH_WAIT_MS;
    while (Date.now() < deadline) {
      await new Promise(resolve => window.setTimeout(resolve, OAUTH_POLL_MS));
      const status = await loginStatus();
      if (status.logged_in) {
        Notification.success(`Logged in to ${status.server_url} as ${status.user}.`, { autoClose: 5000 });
        void jobsPanel.refresh();
        return;
      }
    }
    Notification.warning('The OAuth login did not finish; try again.', { autoClose: 8000 });
  };

  commands.addCommand(CommandIDs.login, {
    label: 'Login…',
    caption: 'Log in to an nbplane server (token or OAuth)',
    execute: async () => {
      const status = await loginStatus();
      if (status.in_session) {
        Notification.info(`Logged in by the nbplane session as ${status.user} at ${status.server_url}.`, { autoClose: 5000 });
        return;
      }
      const answer = await submitForm({
        title: 'Log in to nbplane',
        accept: 'Log in with token',
        extraButtons: [OAUTH],
        watch: showOAuthButton,
        fields: [
          { name: 'url', label: 'nbplane server URL', placeholder: 'https://nbplane.example.com' },
          { name: 'token', label: 'Token (from `nbplane token create`)', kind: 'password' }
        ],
        values: { url: status.server_url ?? '', token: '' },
        check: (values, button): Checked<{ url: string; token: string; oauth: boolean }> => {
          const url = textOf(values, 'url');
          if (!SERVER_URL.test(url)) {
            return { ok: false, field: 'url', message: 'url must start with http:// or https://' };
          }
          const oauth = button === OAUTH;
          const token = textOf(values, 'token');
          if (!oauth && !token) {
            return { ok: false, field: 'token', message: 'paste a token, or use OAuth' };
          }
          return { ok: true, value: { url, token, oauth } };
        },
        send: async (value): Promise<LoginStatus | 'oauth'> => {
          if (!value.oauth) {
            return logIn(value.url, value.token);
          }
          await openOAuthPage(value.url);
          return 'oauth';
        }
      });
      if (answer === 'oauth') {
        void waitForOAuth();
      } else if (answer) {
        Notification.success(`Logged in to ${answer.server_url} as ${answer.user}.`, { autoClose: 5000 });
        void jobsPanel.refresh();
      }
    }
  });

  commands.addCommand(CommandIDs.logout, {
    label: 'Logout',
    caption: 'Forget the nbplane login of this Jupyter server',
    execute: async () => {
      try {
        const status = await logOut();
        if (status.in_session) {
          Notification.info('Inside an nbplane session the login comes from the session and stays.', { autoClose: 6000 });
        } else {
          Notification.success('Logged out of nbplane.', { autoClose: 4000 });
        }
        void jobsPanel.refresh();
      } catch (error) {
        Notification.error(`Logout failed: ${(error as Error).message}`);
      }
    }
  });
}

/** The OAuth button shows only when the server at the URL typed offers OAuth login. */
function showOAuthButton(values: Values, footer: HTMLElement): void {
  const button = Array.from(footer.querySelectorAll('button')).find(candidate => candidate.textContent === OAUTH);
  if (!button) {
    return;
  }
  button.style.display = 'none';
  const url = textOf(values, 'url');
  if (SERVER_URL.test(url)) {
    void loginStatus(url)
      .then(answer => {
        if (answer.oauth_available) {
          button.style.display = '';
        }
      })
      .catch(() => undefined);
  }
}

/** The provider's login page in a new tab; the tab opens before the request, while the click
 * still allows pop-ups. */
async function openOAuthPage(url: string): Promise<void> {
  const popup = window.open('', '_blank');
  const start = await startOAuth(url);
  if (popup) {
    popup.location.href = start.authorize_url;
  } else {
    window.open(start.authorize_url, '_blank');
  }
}
