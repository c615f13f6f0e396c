/**
 * A run while it runs: each step with its status, the live log, a cancel button; when it ends,
 * its outcome and (after a failure) the way to the failing cell.
 */
import { Widget } from '@lumino/widgets';

import { cancelRun, describeRun, followRunLog, runPageUrl } from './api';
import { RunState, failureOf, isFinal, plainLog, progress, stepLabel } from './runs';

const POLL_MS = 1000;

export class RunView extends Widget {
  private state: RunState | null = null;
  private offset = 0;
  private timer = 0;
  private readonly summary = document.createElement('div');
  private readonly bar = document.createElement('progress');
  private readonly steps = document.createElement('ol');
  private readonly log = document.createElement('pre');
  private readonly error = document.createElement('pre');
  private readonly cancelButton = document.createElement('button');
  private readonly failingButton = document.createElement('button');
  private readonly executedLink = document.createElement('a');

  constructor(
    readonly runId: string,
    readonly directory: string,
    private readonly onFinished: (run: RunState) => void,
    private readonly goToFailingCell: () => void
  ) {
    super();
    this.id = `nbplane-run-${runId}`;
    this.addClass('nbplane-run');
    this.title.label = `Run ${directory || 'job'}`;
    this.title.closable = true;
    const header = document.createElement('div');
    header.className = 'nbplane-run-header';
    this.summary.className = 'nbplane-run-summary';
    this.summary.textContent = 'starting…';
    this.cancelButton.className = 'jp-mod-styled jp-mod-warn nbplane-cancel';
    this.cancelButton.textContent = 'Cancel run';
    this.cancelButton.onclick = () => void this.cancel();
    this.failingButton.className = 'jp-mod-styled jp-mod-accept nbplane-go-failing';
    this.failingButton.textContent = 'Go to failing cell';
    this.failingButton.hidden = true;
    this.failingButton.onclick = () => this.goToFailingCell();
    this.executedLink.className = 'jp-mod-styled nbplane-open-executed';
    this.executedLink.textContent = 'Open executed notebook';
    this.executedLink.title = 'The notebooks as this run executed them, with every output (new tab)';
    this.executedLink.target = '_blank';
    this.executedLink.rel = 'noopener';
    this.executedLink.href = runPageUrl(runId);
    this.executedLink.hidden = true;
    header.append(this.summary, this.cancelButton, this.failingButton, this.executedLink);
    this.bar.className = 'nbplane-run-progress';
    this.steps.className = 'nbplane-run-steps';
    this.error.className = 'nbplane-run-error';
    this.error.hidden = true;
    this.log.className = 'nbplane-run-log';
    const logTitle = document.createElement('h3');
    logTitle.textContent = 'Log';
    this.node.append(header, this.bar, this.steps, this.error, logTitle, this.log);
    void this.poll();
  }

  get run(): RunState | null {
    return this.state;
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  private async poll(): Promise<void> {
    if (this.isDisposed) {
      return;
    }
    try {
      const run = await describeRun(this.runId);
      await this.readLog();
      this.render(run);
      if (isFinal(run.status)) {
        await this.readLog(); // the last lines written before the process ended
        this.onFinished(run);
        return;
      }
    } catch (error) {
      this.summary.textContent = `cannot follow the run: ${(error as Error).message}`;
    }
    this.timer = window.setTimeout(() => void this.poll(), POLL_MS);
  }

  private readLog(): Promise<void> {
    return followRunLog(this.runId, this.offset, chunk => {
      this.offset = chunk.offset;
      const atBottom = this.log.scrollTop + this.log.clientHeight >= this.log.scrollHeight - 4;
      this.log.textContent += plainLog(chunk.text);
      if (atBottom) {
        this.log.scrollTop = this.log.scrollHeight;
      }
    });
  }

  private render(run: RunState): void {
    this.state = run;
    const { done, total, text } = progress(run.steps);
    this.node.dataset.status = run.status;
    this.summary.textContent = `${run.directory}: ${run.status} — ${text}`;
    this.bar.max = Math.max(total, 1);
    this.bar.value = done;
    this.steps.replaceChildren(
      ...run.steps.map(step => {
        const item = document.createElement('li');
        item.className = `nbplane-run-step nbplane-status-${step.status.replace(/\s+/g, '-')}`;
        item.dataset.status = step.status;
        item.dataset.step = String(step.order);
        item.textContent = `${stepLabel(step)}: ${step.status}${step.reason ? ` — ${step.reason}` : ''}`;
        return item;
      })
    );
    const final = isFinal(run.status);
    this.cancelButton.hidden = final;
    if (run.error) {
      this.error.hidden = false;
      const failed = run.steps.find(step => step.status === 'failed');
      const line = run.error.line ? `, line ${run.error.line}` : '';
      const where = failed ? `${stepLabel(failed)}${line}: ` : '';
      this.error.textContent = `${where}${run.error.summary || run.error.message || 'failed'}`;
    }
    this.failingButton.hidden = failureOf(run) === null;
    this.executedLink.hidden = !final || !run.run_number;
  }

  private async cancel(): Promise<void> {
    this.cancelButton.disabled = true;
    try {
      this.render(await cancelRun(this.runId));
    } catch (error) {
      this.summary.textContent = `cancel failed: ${(error as Error).message}`;
    } finally {
      this.cancelButton.disabled = false;
    }
  }
}
