/** The "Deploy job" dialog: upload a job folder to the nbplane server and (re)deploy it. */
import { Notification } from '@jupyterlab/apputils';

import { deployDirectory } from './api';
import { CommandIDs } from './commands';
import { all, submitForm, textOf } from './form';
import { Lab } from './lab';
import { JobsPanel } from './panel';
import { checkDirectory, checkOptionalName, checkSchedule } from './validation';

export function activateDeploy(lab: Lab, jobsPanel: JobsPanel): void {
  const { last } = lab;
  lab.commands.addCommand(CommandIDs.deploy, {
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
        values: { directory: lab.currentDirectory(), team: last.team, name: '', schedule: '', enabled: true, reason: '', run_first: false },
        check: values => {
          const schedule = textOf(values, 'schedule');
          return all({
            directory: checkDirectory(textOf(values, 'directory')),
            team: checkOptionalName(textOf(values, 'team'), 'team'),
            name: checkOptionalName(textOf(values, 'name'), 'name'),
            schedule: schedule === 'none' ? { ok: true, value: '' } : checkSchedule(schedule, false),
            enabled: { ok: true, value: values.enabled === true },
            reason: { ok: true, value: textOf(values, 'reason') },
            run_first: { ok: true, value: values.run_first === true }
          });
        },
        send: async value => {
          await lab.saveJob(value.directory);
          return deployDirectory({
            directory: value.directory,
            ...(value.team ? { team: value.team } : {}),
            ...(value.name ? { name: value.name } : {}),
            ...(value.schedule !== null ? { schedule: value.schedule } : {}),
            enabled: value.enabled,
            ...(value.reason ? { reason: value.reason } : {}),
            run_first: value.run_first
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
      lab.shell.activateById(jobsPanel.id);
      void jobsPanel.refresh();
    }
  });
}
