/**
 * Dialog forms that check their input before anything is sent and show what is wrong (a field
 * or the server's answer, in words) in the reopened dialog, with the values kept.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { Checked } from './validation';

export interface Field {
  name: string;
  label: string;
  kind?: 'text' | 'textarea' | 'checkbox' | 'password' | 'select';
  /** A select's choices: [value, label] pairs. */
  options?: [string, string][];
  placeholder?: string;
  help?: string;
}

export type Values = Record<string, string | boolean>;

/** A text field's value, trimmed. */
export function textOf(values: Values, name: string): string {
  return String(values[name] ?? '').trim();
}

class FormBody extends Widget implements Dialog.IBodyWidget<Values> {
  constructor(
    private readonly fields: Field[],
    values: Values,
    error: { field: string | null; message: string } | null
  ) {
    super();
    this.addClass('nbplane-form');
    if (error) {
      const box = document.createElement('div');
      box.className = 'nbplane-form-error';
      box.setAttribute('role', 'alert');
      box.textContent = error.message;
      this.node.appendChild(box);
    }
    for (const field of fields) {
      const row = document.createElement('label');
      row.className = 'nbplane-form-row';
      const title = document.createElement('span');
      title.textContent = field.label;
      let input: HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement;
      if (field.kind === 'textarea') {
        input = document.createElement('textarea');
        input.rows = 3;
      } else if (field.kind === 'select') {
        input = document.createElement('select');
        for (const [value, label] of field.options ?? []) {
          input.add(new Option(label, value));
        }
      } else {
        input = document.createElement('input');
        input.type = field.kind ?? 'text';
      }
      input.name = field.name;
      if (field.kind === 'password') {
        // A token: never offered to the browser's password store.
        input.autocomplete = 'off';
      }
      if (field.placeholder && !(input instanceof HTMLSelectElement)) {
        input.placeholder = field.placeholder;
      }
      const value = values[field.name];
      if (input instanceof HTMLInputElement && field.kind === 'checkbox') {
        input.checked = value === true;
        row.classList.add('nbplane-form-check');
        row.append(input, title);
      } else {
        input.value = typeof value === 'string' ? value : '';
        row.append(title, input);
      }
      if (error?.field === field.name) {
        input.classList.add('nbplane-invalid');
        input.setAttribute('aria-invalid', 'true');
      }
      if (field.help) {
        const help = document.createElement('small');
        help.textContent = field.help;
        row.appendChild(help);
      }
      this.node.appendChild(row);
    }
  }

  getValue(): Values {
    const values: Values = {};
    for (const field of this.fields) {
      const input = this.node.querySelector(`[name="${field.name}"]`) as HTMLInputElement;
      values[field.name] = field.kind === 'checkbox' ? input.checked : input.value;
    }
    return values;
  }

}

export interface FormOptions<T, R> {
  title: string;
  fields: Field[];
  values?: Values;
  accept?: string;
  /** Extra buttons; the chosen button's label is passed to `send`. */
  extraButtons?: string[];
  check: (values: Values, button: string) => Checked<T>;
  /** Called when the dialog opens and as the user types (after a pause), with the dialog's
   * footer, e.g. to show a button only when it applies. */
  watch?: (values: Values, footer: HTMLElement) => void;
  send: (value: T, button: string) => Promise<R>;
}

/**
 * Show the form until its input passes `check` and `send` succeeds, or the user cancels
 * (null). A refused `send` (ApiError or any Error) reopens the form with its message.
 */
export async function submitForm<T, R>(options: FormOptions<T, R>): Promise<R | null> {
  let values: Values = { ...(options.values ?? {}) };
  let error: { field: string | null; message: string } | null = null;
  for (;;) {
    const body = new FormBody(options.fields, values, error);
    const field = error?.field ?? null;
    const watch = options.watch;
    if (watch) {
      let pause = 0;
      const call = () => {
        const footer = body.node.closest('.jp-Dialog-content')?.querySelector('.jp-Dialog-footer');
        if (footer) {
          watch(body.getValue(), footer as HTMLElement);
        }
      };
      body.node.addEventListener('input', () => {
        window.clearTimeout(pause);
        pause = window.setTimeout(call, 300);
      });
      window.setTimeout(call, 0);
    }
    const result = await showDialog({
      title: options.title,
      body,
      focusNodeSelector: field ? `[name="${field}"]` : 'input, textarea',
      buttons: [
        Dialog.cancelButton(),
        ...(options.extraButtons ?? []).map(label => Dialog.createButton({ label })),
        Dialog.okButton({ label: options.accept ?? 'OK' })
      ]
    });
    if (!result.button.accept || result.value === null) {
      return null;
    }
    values = result.value;
    const button = result.button.label;
    const checked = options.check(values, button);
    if (!checked.ok) {
      error = { field: checked.field, message: checked.message };
      continue;
    }
    try {
      return await options.send(checked.value, button);
    } catch (caught) {
      const fault = caught as Error & { field?: string | null };
      error = { field: fault.field ?? null, message: fault.message };
    }
  }
}

/** Several checks at once: the first failure, or all values. */
export function all<T extends Record<string, unknown>>(checks: {
  [K in keyof T]: Checked<T[K]>;
}): Checked<T> {
  const value = {} as T;
  for (const key of Object.keys(checks) as (keyof T)[]) {
    const checked = checks[key];
    if (!checked.ok) {
      return checked;
    }
    value[key] = checked.value;
  }
  return { ok: true, value };
}
