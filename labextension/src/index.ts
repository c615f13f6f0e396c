/**
 * nbplane in JupyterLab: the "nbplane" menu (declared in schema/plugin.json), the step toggle
 * in the cell toolbar, step numbering and failing-cell marks in notebooks, run views and the
 * jobs side panel. Everything goes through nbplane's Jupyter server extension (./api).
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, MainAreaWidget, Notification, showDialog } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { Widget } from '@lumino/widgets';

import { Execution, LocalJob, LoginStatus, RunState, download, jobPath, request } from './api';
import { JobDetails } from './details';
import { Field, Values, all, submitForm } from './form';
import { nbplaneIcon, stepIcon } from './icons';
import { StepNumbering, clearFailure, showFailure, toggleStep } from './notebook';
import { JobsPanel } from './panel';
import { Failure, failureOf } from './runs';
import { RunView } from './runview';
import { Checked, checkArguments, checkDirectory, checkName, checkSchedule } from './validation';

const PLUGIN_ID = '@nbplane/jupyterlab:plugin';
const OAUTH_POLL_MS = 2000;
const OAUTH_WAIT_MS = 10 * 60 * 1000;

export namespace CommandIDs {
  export const createJob = 'nbplane:create-job';
  export const runJob = 'nbplane:run-job';
  export const resume = 'nbplane:resume';
  export const deploy = 'nbplane:deploy';
  export const execute = 'nbplane:execute';
  export const jobs = 'nbplane:jobs';
  export const details = 'nbplane:job-details';
  export const download = 'nbplane:download';
  export const remove = 'nbplane:delete';
  export const login = 'nbplane:login';
  export const logout = 'nbplane:logout';
  export const help = 'nbplane:help';
  export const toggleStep = 'nbplane:toggle-step';
  export const goToFailingCell = 'nbplane:go-to-failing-cell';
}

/** An optional name: empty is none. */
function optionalName(value: string | boolean, field: string): Checked<string | null> {
  const text = String(value).trim();
  return text ? checkName(text, field) : { ok: true, value: null };
}

function text(values: Values, name: string): string {
  return String(values[name] ?? '').trim();
}

function activate(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  docManager: IDocumentManager
): void {
  const { commands, shell } = app;
  /** What the user typed last, to prefill the next dialog (kept in memory only). */
  const last: Values = { team: '', name: '', arguments: '', enabled: true };
  let lastFailure: Failure | null = null;

  const currentDirectory = (): string => {
    const panel = tracker.currentWidget;
    return panel ? PathExt.dirname(panel.context.path) : String(last.directory ?? '');
  };

  // Step numbers and failure marks in every notebook that opens.
  tracker.widgetAdded.connect((_, panel) => {
    void panel.context.ready.then(() => {
      new StepNumbering(panel);
      if (lastFailure && lastFailure.path === panel.context.path) {
        void panel.revealed.then(() => lastFailure && showFailure(panel, lastFailure));
      }
    });
  });

  const openNotebook = async (path: string): Promise<NotebookPanel | null> => {
    const widget = docManager.openOrReveal(path);
    if (!(widget instanceof NotebookPanel)) {
      return null;
    }
    await widget.context.ready;
    await widget.revealed;
    return widget;
  };

  const goToFailure = async (): Promise<void> => {
    if (!lastFailure) {
      Notification.info('No failed run to go to.', { autoClose: 4000 });
      return;
    }
    const panel = await openNotebook(lastFailure.path);
    if (panel && !showFailure(panel, lastFailure)) {
      Notification.warning(`The failing cell is no longer in ${lastFailure.path}.`, { autoClose: 6000 });
    }
  };

  /** Marks of the last run in the open notebooks of its directory. */
  const runFinished = async (run: RunState): Promise<void> => {
    const inJob = (panel: NotebookPanel) =>
      PathExt.dirname(panel.context.path) === run.directory;
    tracker.forEach(panel => inJob(panel) && clearFailure(panel));
    lastFailure = failureOf(run);
    app.commands.notifyCommandChanged(CommandIDs.goToFailingCell);
    if (run.status === 'succeeded') {
      Notification.success(`${run.directory}: all ${run.steps.length} steps succeeded.`, { autoClose: 5000 });
    } else if (lastFailure) {
      Notification.error(`${run.directory} failed at ${lastFailure.path}: ${lastFailure.text.split('\n')[0]}`, {
        autoClose: 8000
      });
      await goToFailure();
    } else if (run.status === 'failed') {
      Notification.error(`${run.directory} failed: ${run.error?.message ?? 'see the log'}`, { autoClose: 8000 });
    }
  };

  /** Save the job's open notebooks first: the run reads the files. */
  const saveJob = async (directory: string): Promise<void> => {
    const saves: Promise<void>[] = [];
    tracker.forEach(panel => {
      if (PathExt.dirname(panel.context.path) === directory && panel.context.model.dirty) {
        saves.push(panel.context.save());
      }
    });
    await Promise.all(saves);
  };

  const startRun = async (directory: string, argumentsValue: Record<string, unknown>, resume: boolean) => {
    await saveJob(directory);
    const { id } = await request<{ id: string }>('runs', {
      method: 'POST',
      body: { directory, arguments: argumentsValue, resume }
    });
    const view = new RunView(id, directory, run => void runFinished(run), () => void goToFailure());
    const widget = new MainAreaWidget({ content: view });
    widget.id = view.id;
    widget.title.label = view.title.label;
    widget.title.icon = nbplaneIcon;
    const notebook = tracker.currentWidget;
    shell.add(widget, 'main', notebook ? { ref: notebook.id, mode: 'split-right' } : undefined);
    shell.activateById(widget.id);
    return view;
  };

  const runForm = (resume: boolean) =>
    submitForm({
      title: resume ? 'Resume job (from the changed or failed step)' : 'Run job',
      accept: resume ? 'Resume' : 'Run',
      fields: [
        { name: 'directory', label: 'Job directory', placeholder: '(the Jupyter root)' },
        { name: 'arguments', label: 'Arguments (JSON object)', kind: 'textarea', placeholder: '{"days": 7}' }
      ],
      values: { directory: currentDirectory(), arguments: last.arguments },
      check: values =>
        all({ directory: checkDirectory(text(values, 'directory')), arguments: checkArguments(text(values, 'arguments')) }),
      send: async value => {
        last.directory = value.directory;
        last.arguments = Object.keys(value.arguments).length ? JSON.stringify(value.arguments) : '';
        return startRun(value.directory, value.arguments, resume);
      }
    });

  const panel = new JobsPanel(
    (team, name) => void commands.execute(CommandIDs.details, { team, name }),
    () => void commands.execute(CommandIDs.login)
  );
  panel.title.icon = nbplaneIcon;
  shell.add(panel, 'right', { rank: 900 });

  const openDetails = (team: string, name: string) => {
    const content = new JobDetails(team, name);
    const widget = new MainAreaWidget({ content });
    widget.id = content.id;
    widget.title.label = content.title.label;
    widget.title.icon = nbplaneIcon;
    shell.add(widget, 'main');
    shell.activateById(widget.id);
  };

  /** The team/name form of the commands about one deployed job; `extra` fields are checked by
   * `checkExtra` and handed to `send` with the job. */
  const jobForm = <X, R>(
    title: string,
    accept: string,
    send: (team: string, name: string, extra: X) => Promise<R>,
    options: { fields?: Field[]; checkExtra?: (values: Values) => Checked<X>; args?: ReadonlyPartialJSONObject } = {}
  ) =>
    submitForm({
      title,
      accept,
      fields: [{ name: 'team', label: 'Team' }, { name: 'name', label: 'Job name' }, ...(options.fields ?? [])],
      values: {
        ...last,
        team: String(options.args?.team ?? last.team ?? ''),
        name: String(options.args?.name ?? last.name ?? '')
      },
      check: values =>
        all({
          team: checkName(text(values, 'team'), 'team'),
          name: checkName(text(values, 'name'), 'name'),
          extra: options.checkExtra ? options.checkExtra(values) : ({ ok: true, value: undefined as X } as Checked<X>)
        }),
      send: value => {
        last.team = value.team;
        last.name = value.name;
        return send(value.team, value.name, value.extra);
      }
    });

  commands.addCommand(CommandIDs.createJob, {
    label: 'Create job…',
    caption: 'A new job folder with a notebook of step cells',
    execute: async () => {
      const job = await submitForm({
        title: 'Create job',
        accept: 'Create',
        fields: [
          { name: 'name', label: 'Job name', placeholder: 'daily-sales' },
          { name: 'team', label: 'Team (optional)' },
          { name: 'directory', label: 'Create it in folder', placeholder: '(the Jupyter root)' }
        ],
        values: { name: '', team: last.team, directory: currentDirectory() },
        check: values =>
          all({
            name: checkName(text(values, 'name'), 'name'),
            team: optionalName(values.team, 'team'),
            directory: checkDirectory(text(values, 'directory'))
          }),
        send: value =>
          request<LocalJob>('jobs', {
            method: 'POST',
            body: { name: value.name, directory: value.directory, ...(value.team ? { team: value.team } : {}) }
          })
      });
      if (!job) {
        return;
      }
      last.directory = job.directory;
      Notification.success(`Created job ${job.name} in ${job.directory}.`, { autoClose: 4000 });
      const notebook = job.steps.find(step => step.kind === 'notebook');
      if (notebook) {
        await openNotebook(PathExt.join(job.directory, notebook.file));
      }
    }
  });

  commands.addCommand(CommandIDs.runJob, {
    label: 'Run job…',
    caption: 'Run the job of this folder, with live step progress and log',
    execute: () => runForm(false)
  });

  commands.addCommand(CommandIDs.resume, {
    label: 'Resume job…',
    caption: 'Rerun from the changed or failed step',
    execute: () => runForm(true)
  });

  commands.addCommand(CommandIDs.deploy, {
    label: 'Deploy job…',
    caption: 'Upload this job folder to the nbplane server and deploy it',
    execute: async () => {
      const deployed = await submitForm({
        title: 'Deploy job',
        accept: 'Deploy',
        fields: [
          { name: 'directory', label: 'Job directory', placeholder: '(the Jupyter root)' },
          { name: 'team', label: 'Team (default: the job\'s)' },
          { name: 'name', label: 'Name (default: the job\'s)' },
          { name: 'schedule', label: 'Schedule (cron)', placeholder: '0 6 * * *', help: 'Empty: keep the deployed schedule (none for a new job); "none" removes it.' },
          { name: 'enabled', label: 'Schedule enabled', kind: 'checkbox' },
          { name: 'reason', label: 'Reason (for the record)' },
          { name: 'run_first', label: 'Run it now, once deployed', kind: 'checkbox' }
        ],
        values: { directory: currentDirectory(), team: last.team, name: '', schedule: '', enabled: true, reason: '', run_first: false },
        check: values => {
          const schedule = text(values, 'schedule');
          return all({
            directory: checkDirectory(text(values, 'directory')),
            team: optionalName(values.team, 'team'),
            name: optionalName(values.name, 'name'),
            schedule: schedule === 'none' ? { ok: true, value: '' } : checkSchedule(schedule, false),
            enabled: { ok: true, value: values.enabled === true },
            reason: { ok: true, value: text(values, 'reason') },
            run_first: { ok: true, value: values.run_first === true }
          });
        },
        send: async value => {
          await saveJob(value.directory);
          return request<{ team: string; name: string; version: { id: string }; execution: Execution | null }>('deploy', {
            method: 'POST',
            body: {
              directory: value.directory,
              ...(value.team ? { team: value.team } : {}),
              ...(value.name ? { name: value.name } : {}),
              ...(value.schedule !== null ? { schedule: value.schedule } : {}),
              enabled: value.enabled,
              ...(value.reason ? { reason: value.reason } : {}),
              run_first: value.run_first
            }
          });
        }
      });
      if (!deployed) {
        return;
      }
      last.team = deployed.team;
      last.name = deployed.name;
      Notification.success(
        `Deployed ${deployed.team}/${deployed.name} (version ${deployed.version.id.slice(0, 12)})` +
          (deployed.execution ? `; execution ${deployed.execution.id} started.` : '.'),
        { autoClose: 6000 }
      );
      shell.activateById(panel.id);
      void panel.refresh();
    }
  });

  commands.addCommand(CommandIDs.execute, {
    label: 'Execute deployed job…',
    caption: 'Run the deployed version now on the nbplane server',
    execute: async args => {
      const execution = await jobForm(
        'Execute deployed job',
        'Execute',
        (team, name, extra: Record<string, unknown> | null) =>
          request<Execution>(jobPath(team, name, 'executions'), {
            method: 'POST',
            body: extra ? { arguments: extra } : {}
          }),
        {
          fields: [{ name: 'arguments', label: 'Arguments (JSON; empty: the deployment\'s)', kind: 'textarea' }],
          checkExtra: values => {
            const parsed = checkArguments(text(values, 'arguments'));
            return parsed.ok && !text(values, 'arguments') ? { ok: true, value: null } : parsed;
          },
          args
        }
      );
      if (execution) {
        Notification.success(`Execution ${execution.id} started.`, { autoClose: 4000 });
        openDetails(String(last.team), String(last.name));
      }
    }
  });

  commands.addCommand(CommandIDs.jobs, {
    label: 'Jobs',
    caption: 'Your deployed jobs and their latest executions',
    execute: () => {
      shell.activateById(panel.id);
      void panel.refresh();
    }
  });

  commands.addCommand(CommandIDs.details, {
    label: 'Job details…',
    caption: 'Deployment, schedule, executions, logs and properties of a job',
    execute: async args => {
      if (args.team && args.name) {
        openDetails(String(args.team), String(args.name));
        return;
      }
      await jobForm('Job details', 'Show', async (team, name) => openDetails(team, name));
    }
  });

  commands.addCommand(CommandIDs.download, {
    label: 'Download job…',
    caption: 'The deployed version of a job, as a zip',
    execute: async args => {
      await jobForm(
        'Download job',
        'Download',
        async (team, name) => {
          const blob = await download(jobPath(team, name, 'download'));
          const link = document.createElement('a');
          link.href = URL.createObjectURL(blob);
          link.download = `${name}.zip`;
          link.click();
          window.setTimeout(() => URL.revokeObjectURL(link.href), 10000);
        },
        { args }
      );
    }
  });

  commands.addCommand(CommandIDs.remove, {
    label: 'Delete job…',
    caption: 'Delete a job, its versions and its deployment from the nbplane server',
    execute: async args => {
      const deleted = await jobForm(
        'Delete job',
        'Delete',
        async (team, name, force: boolean) => {
          await request<void>(jobPath(team, name), { method: 'DELETE', query: force ? { force: 'true' } : {} });
          return `${team}/${name}`;
        },
        {
          fields: [{ name: 'force', label: 'Cancel its running executions first', kind: 'checkbox' }],
          checkExtra: values => ({ ok: true, value: values.force === true }),
          args
        }
      );
      if (deleted) {
        Notification.success(`Deleted ${deleted}.`, { autoClose: 4000 });
        void panel.refresh();
      }
    }
  });

  const waitForOAuth = async (): Promise<void> => {
    const deadline = Date.now() + OAUTH_WAIT_MS;
    while (Date.now() < deadline) {
      await new Promise(resolve => window.setTimeout(resolve, OAUTH_POLL_MS));
      const status = await request<LoginStatus>('status');
      if (status.logged_in) {
        Notification.success(`Logged in to ${status.server_url} as ${status.user}.`, { autoClose: 5000 });
        void panel.refresh();
        return;
      }
    }
    Notification.warning('The OAuth login did not finish; try again.', { autoClose: 8000 });
  };

  commands.addCommand(CommandIDs.login, {
    label: 'Login…',
    caption: 'Log in to an nbplane server (token or OAuth)',
    execute: async () => {
      const status = await request<LoginStatus>('status');
      if (status.in_session) {
        Notification.info(`Logged in by the nbplane session as ${status.user} at ${status.server_url}.`, { autoClose: 5000 });
        return;
      }
      const OAUTH = 'Log in with OAuth';
      const answer = await submitForm({
        title: 'Log in to nbplane',
        accept: 'Log in with token',
        extraButtons: [OAUTH],
        // The OAuth button shows only when the server at the URL typed offers OAuth login.
        watch: (values, footer) => {
          const button = Array.from(footer.querySelectorAll('button')).find(
            candidate => candidate.textContent === OAUTH
          );
          if (!button) {
            return;
          }
          button.style.display = 'none';
          const url = text(values, 'url');
          if (/^https?:\/\/\S+$/.test(url)) {
            void request<LoginStatus>('status', { query: { url } })
              .then(answer => {
                if (answer.oauth_available) {
                  button.style.display = '';
                }
              })
              .catch(() => undefined);
          }
        },
        fields: [
          { name: 'url', label: 'nbplane server URL', placeholder: 'https://nbplane.example.com' },
          { name: 'token', label: 'Token (from `nbplane token create`)', kind: 'password' }
        ],
        values: { url: status.server_url ?? '', token: '' },
        check: (values, button): Checked<{ url: string; token: string; oauth: boolean }> => {
          const url = text(values, 'url');
          if (!/^https?:\/\/\S+$/.test(url)) {
            return { ok: false, field: 'url', message: 'url must start with http:// or https://' };
          }
          const oauth = button === OAUTH;
          const token = text(values, 'token');
          if (!oauth && !token) {
            return { ok: false, field: 'token', message: 'paste a token, or use OAuth' };
          }
          return { ok: true, value: { url, token, oauth } };
        },
        send: async value => {
          if (!value.oauth) {
            return request<LoginStatus>('login', { method: 'POST', body: { url: value.url, token: value.token } });
          }
          const popup = window.open('', '_blank');
          const start = await request<{ authorize_url: string }>('oauth/start', { query: { url: value.url } });
          if (popup) {
            popup.location.href = start.authorize_url;
          } else {
            window.open(start.authorize_url, '_blank');
          }
          return 'oauth' as const;
        }
      });
      if (answer === 'oauth') {
        // The provider's page is open in another tab; the status tells when it is done.
        void waitForOAuth();
      } else if (answer) {
        Notification.success(`Logged in to ${answer.server_url} as ${answer.user}.`, { autoClose: 5000 });
        void panel.refresh();
      }
    }
  });

  commands.addCommand(CommandIDs.logout, {
    label: 'Logout',
    caption: 'Forget the nbplane login of this Jupyter server',
    execute: async () => {
      try {
        const status = await request<LoginStatus>('logout', { method: 'POST' });
        if (status.in_session) {
          Notification.info('Inside an nbplane session the login comes from the session and stays.', { autoClose: 6000 });
        } else {
          Notification.success('Logged out of nbplane.', { autoClose: 4000 });
        }
        void panel.refresh();
      } catch (error) {
        Notification.error(`Logout failed: ${(error as Error).message}`);
      }
    }
  });

  commands.addCommand(CommandIDs.help, {
    label: 'Help',
    caption: 'What the nbplane menu does',
    execute: () => {
      const body = new Widget();
      body.addClass('nbplane-help');
      const lines = [
        'Tag code cells as steps with the cell toolbar\'s step button (or nbplane → Toggle step): they run in order, numbered at their top right; a cell starting with %%sql is SQL.',
        'Run job runs the notebook\'s folder and shows each step and the log live; a failed run marks the failing cell with its error (Go to failing cell jumps there).',
        'Resume reruns from the changed or failed step.',
        'Login (a token from `nbplane token create`, or OAuth), then Deploy uploads the folder and schedules it; the nbplane side panel shows your jobs and their latest executions.',
        'The same works from the command line: nbplane job run DIR, nbplane job deploy …'
      ];
      const list = document.createElement('ul');
      for (const line of lines) {
        const item = document.createElement('li');
        item.textContent = line;
        list.appendChild(item);
      }
      body.node.appendChild(list);
      return showDialog({ title: 'nbplane', body, buttons: [Dialog.okButton()] });
    }
  });

  commands.addCommand(CommandIDs.toggleStep, {
    label: 'Toggle step',
    caption: 'Make this cell a job step, or not',
    icon: stepIcon,
    isEnabled: () => tracker.activeCell?.model.type === 'code',
    isToggled: () => {
      const tags = tracker.activeCell?.model.getMetadata('tags');
      return Array.isArray(tags) && (tags.includes('step') || tags.includes('vdk'));
    },
    execute: () => {
      const cell = tracker.activeCell;
      if (cell && cell.model.type === 'code') {
        toggleStep(cell);
        commands.notifyCommandChanged(CommandIDs.toggleStep);
      }
    }
  });
  tracker.activeCellChanged.connect(() => commands.notifyCommandChanged(CommandIDs.toggleStep));

  commands.addCommand(CommandIDs.goToFailingCell, {
    label: 'Go to failing cell',
    caption: 'The cell where the last run failed',
    isEnabled: () => lastFailure !== null,
    execute: () => goToFailure()
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'nbplane: notebook data jobs in JupyterLab',
  autoStart: true,
  requires: [INotebookTracker, IDocumentManager],
  activate
};

export default plugin;
