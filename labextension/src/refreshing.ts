/**
 * A widget that reads its content again every few seconds while it is visible, dropping
 * answers that a newer reading overtook.
 */
import { Widget } from '@lumino/widgets';

const REFRESH_MS = 10000;

export abstract class RefreshingWidget extends Widget {
  private timer = 0;
  private generation = 0;

  /** Read and show the content; `current()` turns false once a newer reading started. */
  protected abstract load(current: () => boolean): Promise<void>;

  protected onAfterShow(): void {
    void this.refresh();
  }

  protected onAfterHide(): void {
    this.stop();
  }

  dispose(): void {
    this.stop();
    super.dispose();
  }

  /** Read now, and again in a while if still visible. */
  async refresh(): Promise<void> {
    this.stop();
    const generation = ++this.generation;
    const current = () => generation === this.generation && !this.isDisposed;
    await this.load(current);
    if (current() && this.isVisible) {
      this.timer = window.setTimeout(() => void this.refresh(), REFRESH_MS);
    }
  }

  private stop(): void {
    window.clearTimeout(this.timer);
    this.timer = 0;
  }
}
