// What every page of the console shares: where it draws, how it reports, when it stops.
import { ApiError } from './api.js';
import { el } from './dom.js';

export interface View {
  /** The page's content; replaced when the address changes. */
  root: HTMLElement;
  /** Aborted when the user leaves the page: streams and long waits end with it. */
  signal: AbortSignal;
  /** Draws the page again (after a change), keeping the address. */
  again: () => void;
}

export function say(text: string): void {
  const message = document.getElementById('message');
  if (message) message.textContent = text;
}

/** Sent on ``window`` when the server no longer takes the sign-in: main.ts shows the form. */
export const SIGNED_OUT = 'nbplane-signed-out';

/** An error shown where it happened; a lost sign-in goes back to the sign-in form. */
export function failed(where: HTMLElement, error: unknown): void {
  if (error instanceof ApiError && error.status === 401) {
    window.dispatchEvent(new Event(SIGNED_OUT));
    return;
  }
  const text = error instanceof Error ? error.message : String(error);
  where.replaceChildren(text);
  where.hidden = false;
}

export function errorBox(): HTMLElement {
  return el('p', { class: 'error', role: 'alert', hidden: true });
}

/** Runs a button's action with the button disabled; its error shows in ``where``. */
export function action(label: string, where: HTMLElement, run: () => Promise<unknown>,
  attributes: Record<string, string> = {}): HTMLButtonElement {
  return el('button', {
    type: 'button', ...attributes,
    onclick: async (event: Event) => {
      const button = event.currentTarget as HTMLButtonElement;
      button.disabled = true;
      where.hidden = true;
      try {
        await run();
      } catch (error) {
        failed(where, error);
      } finally {
        button.disabled = false;
      }
    },
  }, label);
}

export function heading(text: string, ...more: (Node | string)[]): HTMLElement {
  return el('h2', { tabindex: -1 }, text, ...more);
}
