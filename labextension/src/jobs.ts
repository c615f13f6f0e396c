/**
 * Local jobs: create a job folder, run or resume it with a run view beside the notebook, and
 * say how the run ended (a failure is marked at its cell).
 */
import { Notification } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';

import { createJob, startRun } from './api';
import { CommandIDs } from './commands';
import { FailingCell } from './failures';
import { all, submitForm, textOf } from './form';
import { Lab } from './lab';
import { showRunOutputs } from './outputs';
import { RunState } from './runs';
import { RunView } from './runview';
import { checkArguments, checkDirectory, checkName, checkOptionalName, suggestName } from './validation';

/** Arguments handed to a command as JSON text (a row's "Run again"). */
function checkedArguments(text: string): Record<string, unknown> {
  const checked = checkArguments(text);
  if (!checked.ok) {
    throw new Error(checked.message);
  }
  return checked.value;
}

export function activateJobs(lab: Lab, failingCell: FailingCell): void {
  const { commands, last } = lab;

  const runFinished = async (run: RunState): Promise<void> => {
    const failure = failingCell.record(run);
    await showRunOutputs(lab, run).catch(error =>
      Notification.warning(`The run's outputs cannot be shown: ${(error as Error).message}`, { autoClose: 6000 })
    );
    if (run.status === 'succeeded') {
      Notification.success(`${run.directory}: all ${run.steps.length} steps succeeded.`, { autoClose: 5000 });
    } else if (failure) {
      Notification.error(`${run.directory} failed at ${failure.path}: ${failure.text.split('\n')[0]}`, {
        autoClose: 8000
      });
      await failingCell.goTo();
    } else if (run.status === 'failed') {
      Notification.error(`${run.directory} failed: ${run.error?.message ?? 'see the log'}`, { autoClose: 8000 });
    }
  };

  const runJob = async (directory: string, args: Record<string, unknown>, resume: boolean): Promise<RunView> => {
    await lab.saveJob(directory);
    const { id } = await startRun({ directory, arguments: args, resume });
    const view = new RunView(id, directory, ended => void runFinished(ended), () => void failingCell.goTo());
    lab.showInMain(view, lab.tracker.currentWidget);
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
      values: { directory: lab.currentDirectory(), arguments: last.arguments },
      check: values =>
        all({
          directory: checkDirectory(textOf(values, 'directory')),
          arguments: checkArguments(textOf(values, 'arguments'))
        }),
      send: async value => {
        last.directory = value.directory;
        last.arguments = Object.keys(value.arguments).length ? JSON.stringify(value.arguments) : '';
        return runJob(value.directory, value.arguments, resume);
      }
    });

  commands.addCommand(CommandIDs.createJob, {
    label: 'Create job…',
    caption: 'A new job folder with a notebook of step cells (or a copy of `notebook`)',
    execute: async args => {
      const notebook = args.notebook ? String(args.notebook) : null;
      if (notebook) {
        await lab.saveJob(PathExt.dirname(notebook));
      }
      const job = await submitForm({
        title: notebook ? `Create job from ${PathExt.basename(notebook)}` : 'Create job',
        accept: 'Create',
        fields: [
          { name: 'name', label: 'Job name', placeholder: 'daily-sales' },
          { name: 'team', label: 'Team (optional)' },
          { name: 'directory', label: 'Create it in folder', placeholder: '(the Jupyter root)' }
        ],
        values: {
          name: notebook ? suggestName(PathExt.basename(notebook)) : String(args.name ?? ''),
          team: last.team,
          directory: args.directory !== undefined ? String(args.directory) : lab.currentDirectory()
        },
        check: values =>
          all({
            name: checkName(textOf(values, 'name'), 'name'),
            team: checkOptionalName(textOf(values, 'team'), 'team'),
            directory: checkDirectory(textOf(values, 'directory'))
          }),
        send: value =>
          createJob({
            name: value.name,
            directory: value.directory,
            ...(value.team ? { team: value.team } : {}),
            ...(notebook ? { notebook } : {})
          })
      });
      if (!job) {
        return;
      }
      last.directory = job.directory;
      Notification.success(`Created job ${job.name} in ${job.directory}.`, { autoClose: 4000 });
      const first = job.steps.find(step => step.kind === 'notebook');
      if (first) {
        await lab.openNotebook(PathExt.join(job.directory, first.file));
      }
    }
  });

  commands.addCommand(CommandIDs.runJob, {
    label: 'Run job…',
    caption: 'Run the job of this folder, with live step progress and log',
    execute: args =>
      args.directory !== undefined
        ? runJob(String(args.directory), checkedArguments(String(args.arguments ?? '')), false)
        : runForm(false)
  });

  commands.addCommand(CommandIDs.resume, {
    label: 'Resume job…',
    caption: 'Rerun from the changed or failed step',
    execute: () => runForm(true)
  });
}
