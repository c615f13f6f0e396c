/** The "Deploy job" dialog: upload a job folder to the nbplane server and (re)deploy it. */
import { Notification } from '@jupyterlab/apputils';

import { deployDirectory } from './api';
import { CommandIDs } from './commands';
import { all, submitForm, textOf } from './form';
import { Lab } from './lab';
import { JobsPanel } from './panel';
import {
  browserTimezone,
  checkDeployArguments,
  checkDirectory,
  checkOptionalName,
  checkRetries,
  checkRetryDelay,
  checkSchedule,
  checkTimezone
} from './validation';

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
          { name: 'timezone', label: 'Time zone (IANA)', placeholder: 'Europe/Paris', help: 'The schedule is read in this time zone; your browser\'s by default. Empty: keep the deployed one (UTC for a new job).' },
          { name: 'enabled', label: 'Schedule enabled', kind: 'checkbox' },
          { name: 'arguments', label: 'Arguments (JSON object)', kind: 'textarea', placeholder: '{"days": 7}', help: 'What every execution gets unless it names its own. Empty: keep the deployed ones.' },
          { name: 'retries', label: 'Retries (0-10)', placeholder: '0', help: 'Attempts after a failed one. Empty: keep the deployed value (0 for a new job).' },
          { name: 'retry_delay', label: 'Retry delay (seconds)', placeholder: '60', help: 'Wait before the first retry; each later wait doubles, at most 1 hour.' },
          {
            name: 'retry_on',
            label: 'Retry on',
            kind: 'select',
            options: [
              ['', '(keep the deployed choice; any failure for a new job)'],
              ['any', 'any failure'],
              ['platform', 'platform failures only (lost, not started, timed out)']
            ]
          },
          { name: 'reason', label: 'Reason (for the record)' },
          { name: 'run_first', label: 'Run it now, once deployed', kind: 'checkbox' }
        ],
        values: { directory: lab.currentDirectory(), team: last.team, name: '', schedule: '', timezone: browserTimezone(), arguments: '', enabled: true, retries: '', retry_delay: '', retry_on: '', reason: '', run_first: false },
        check: values => {
          const schedule = textOf(values, 'schedule');
          return all({
            directory: checkDirectory(textOf(values, 'directory')),
            team: checkOptionalName(textOf(values, 'team'), 'team'),
            name: checkOptionalName(textOf(values, 'name'), 'name'),
            schedule: schedule === 'none' ? { ok: true, value: '' } : checkSchedule(schedule, false),
            timezone: checkTimezone(textOf(values, 'timezone')),
            enabled: { ok: true, value: values.enabled === true },
            arguments: checkDeployArguments(textOf(values, 'arguments')),
            retries: checkRetries(textOf(values, 'retries')),
            retry_delay: checkRetryDelay(textOf(values, 'retry_delay')),
            retry_on: { ok: true, value: textOf(values, 'retry_on') as '' | 'any' | 'platform' },
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
            ...(value.timezone !== null ? { timezone: value.timezone } : {}),
            enabled: value.enabled,
            ...(value.arguments !== null ? { arguments: value.arguments } : {}),
            ...(value.retries !== null ? { retries: value.retries } : {}),
            ...(value.retry_delay !== null ? { retry_delay: value.retry_delay } : {}),
            ...(value.retry_on ? { retry_on: value.retry_on } : {}),
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
