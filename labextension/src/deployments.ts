/**
 * Jobs on the nbplane server: the jobs side panel, and the commands about one deployed job
 * (execute, details, download, delete), each asking for its team and name unless given.
 */
import { Notification } from '@jupyterlab/apputils';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { deleteJob, downloadJob, executeJob } from './api';
import { CommandIDs } from './commands';
import { JobDetails } from './details';
import { Field, Values, all, submitForm, textOf } from './form';
import { nbplaneIcon } from './icons';
import { Lab } from './lab';
import { JobsPanel } from './panel';
import { Checked, checkArguments, checkName } from './validation';

/** Adds the jobs panel to the right side bar, and the commands; the panel, to refresh. */
export function activateDeployments(lab: Lab): JobsPanel {
  const { commands, shell, last } = lab;

  const jobsPanel = new JobsPanel(
    (team, name) => void commands.execute(CommandIDs.details, { team, name }),
    () => void commands.execute(CommandIDs.login),
    () => void commands.execute(CommandIDs.jobsPage)
  );
  jobsPanel.title.icon = nbplaneIcon;
  shell.add(jobsPanel, 'right', { rank: 900 });

  const openDetails = (team: string, name: string) => lab.showInMain(new JobDetails(team, name));

  /** The team/name form of a command about one deployed job; `extra` fields are checked by
   * `checkExtra` and handed to `send` with the job. Given the job in `args` (a row of the jobs
   * page), only the extra fields are asked, and nothing when there are none. */
  const jobForm = async <X, R>(
    title: string,
    accept: string,
    send: (team: string, name: string, extra: X) => Promise<R>,
    options: { fields?: Field[]; checkExtra?: (values: Values) => Checked<X>; args?: ReadonlyPartialJSONObject } = {}
  ): Promise<R | null> => {
    const given = options.args?.team && options.args?.name;
    if (given && !options.fields?.length) {
      last.team = String(options.args?.team);
      last.name = String(options.args?.name);
      return send(String(last.team), String(last.name), undefined as X);
    }
    return submitForm({
      title: given ? `${title} ${options.args?.team}/${options.args?.name}` : title,
      accept,
      fields: [
        ...(given ? [] : [{ name: 'team', label: 'Team' }, { name: 'name', label: 'Job name' }]),
        ...(options.fields ?? [])
      ],
      values: {
        ...last,
        team: String(options.args?.team ?? last.team ?? ''),
        name: String(options.args?.name ?? last.name ?? '')
      },
      check: values =>
        all({
          team: checkName(given ? String(options.args?.team) : textOf(values, 'team'), 'team'),
          name: checkName(given ? String(options.args?.name) : textOf(values, 'name'), 'name'),
          extra: options.checkExtra ? options.checkExtra(values) : ({ ok: true, value: undefined as X } as Checked<X>)
        }),
      send: value => {
        last.team = value.team;
        last.name = value.name;
        return send(value.team, value.name, value.extra);
      }
    });
  };

  commands.addCommand(CommandIDs.execute, {
    label: 'Execute deployed job…',
    caption: 'Run the deployed version now on the nbplane server',
    execute: async args => {
      const execution = await jobForm(
        'Execute deployed job',
        'Execute',
        (team, name, extra: Record<string, unknown> | null) => executeJob(team, name, extra),
        {
          fields: [{ name: 'arguments', label: 'Arguments (JSON; empty: the deployment\'s)', kind: 'textarea' }],
          checkExtra: values => {
            const parsed = checkArguments(textOf(values, 'arguments'));
            return parsed.ok && !textOf(values, 'arguments') ? { ok: true, value: null } : parsed;
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
      shell.activateById(jobsPanel.id);
      void jobsPanel.refresh();
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
          const blob = await downloadJob(team, name);
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
          await deleteJob(team, name, force);
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
        void jobsPanel.refresh();
      }
    }
  });

  return jobsPanel;
}
