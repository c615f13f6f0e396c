/**
 * Jobs from where the files are: "Create job" on a folder (a new job folder in it) or on a
 * notebook (a job from that notebook) in the file browser's context menu and the notebook
 * toolbar, as jupyter-scheduler offers its jobs; and "Convert job to notebook" (VDK's
 * `convert-job-to-notebook`) on a job folder and in the nbplane menu. Both reuse the create-job
 * command and the server's `job/notebook` route, so the logic stays in one place.
 */
import { Notification } from '@jupyterlab/apputils';
import { PathExt } from '@jupyterlab/coreutils';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { Contents } from '@jupyterlab/services';

import { convertJob } from './api';
import { CommandIDs } from './commands';
import { all, submitForm, textOf } from './form';
import { nbplaneIcon } from './icons';
import { Lab } from './lab';
import { checkDirectory } from './validation';

export function activateFileBrowser(lab: Lab, browsers: IFileBrowserFactory | null): void {
  const { commands, last } = lab;

  /** The file browser's first selected item, if it is a folder or a notebook. */
  const selected = (): Contents.IModel | null => {
    const item = browsers?.tracker.currentWidget?.selectedItems().next();
    const model = item && !item.done ? item.value : null;
    return model && (model.type === 'directory' || model.type === 'notebook') ? model : null;
  };

  commands.addCommand(CommandIDs.createJobHere, {
    label: () => (selected()?.type === 'notebook' ? 'Create job from this notebook…' : 'Create job here…'),
    caption: 'On a folder: a new job folder in it; on a notebook: a job from that notebook',
    icon: nbplaneIcon,
    isVisible: () => selected() !== null,
    execute: () => {
      const item = selected();
      if (!item) {
        return;
      }
      return item.type === 'directory'
        ? commands.execute(CommandIDs.createJob, { directory: item.path })
        : commands.execute(CommandIDs.createJob, { notebook: item.path, directory: PathExt.dirname(item.path) });
    }
  });

  commands.addCommand(CommandIDs.createJobFromNotebook, {
    label: 'Create job',
    caption: 'Make a job of this notebook: a job folder with a copy of it, its code cells as steps',
    icon: nbplaneIcon,
    isEnabled: () => lab.tracker.currentWidget !== null,
    execute: () => {
      const path = lab.tracker.currentWidget?.context.path;
      if (path) {
        return commands.execute(CommandIDs.createJob, { notebook: path, directory: PathExt.dirname(path) });
      }
    }
  });

  const convert = async (directory: string): Promise<void> => {
    await lab.saveJob(directory);
    const converted = await convertJob(directory);
    Notification.success(
      `Converted ${directory || 'the job'}: ${converted.steps.length} steps in ${converted.notebook}.`,
      { autoClose: 5000 }
    );
    await lab.openNotebook(converted.notebook);
  };

  commands.addCommand(CommandIDs.convertJob, {
    label: 'Convert job to notebook…',
    caption: "The job's .py and .sql steps as step cells of one notebook, in a new job folder",
    execute: async args => {
      const item = args.fromFileBrowser ? selected() : null;
      if (item?.type === 'directory') {
        try {
          await convert(item.path);
        } catch (error) {
          Notification.error((error as Error).message, { autoClose: 10000 });
        }
        return;
      }
      await submitForm({
        title: 'Convert job to notebook',
        accept: 'Convert',
        fields: [
          {
            name: 'directory',
            label: 'Job directory',
            placeholder: '(the Jupyter root)',
            help: 'Its steps become cells of one notebook in DIRECTORY-notebook, which opens.'
          }
        ],
        values: { directory: String(args.directory ?? last.directory ?? lab.currentDirectory()) },
        check: values => all({ directory: checkDirectory(textOf(values, 'directory')) }),
        send: value => convert(value.directory)
      });
    }
  });
}
