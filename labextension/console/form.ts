// A form made from a notebook API's JSON-Schema input contract: one field per property (a
// checkbox, a number, a choice, text, or JSON for arrays and objects), read back into the
// parameters the contract asks for. The server checks them again and names a wrong field.
import type { JsonSchema } from './api.js';
import { el, json } from './dom.js';

function kind(schema: JsonSchema): string {
  const types = Array.isArray(schema.type) ? schema.type.filter(t => t !== 'null') : [schema.type];
  if (schema.enum) return 'enum';
  return types[0] ?? 'json';
}

export function schemaFields(schema: JsonSchema | null, formId: string): HTMLElement[] {
  const properties = schema?.properties ?? {};
  const required = new Set(schema?.required ?? []);
  return Object.entries(properties).map(([name, property]) => {
    const id = `${formId}-${name}`;
    const label = el('label', { for: id }, property.title ?? name, required.has(name) ? ' *' : '');
    const help = property.description ? el('p', { class: 'help', id: `${id}-help` }, property.description) : null;
    const common = { id, name, 'data-kind': kind(property), 'aria-describedby': help ? `${id}-help` : undefined };
    let input: HTMLElement;
    switch (kind(property)) {
      case 'boolean':
        input = el('input', { ...common, type: 'checkbox', checked: property.default === true });
        break;
      case 'integer':
      case 'number':
        input = el('input', {
          ...common, type: 'number', required: required.has(name),
          step: kind(property) === 'integer' ? '1' : 'any',
          min: property.minimum, max: property.maximum,
          value: typeof property.default === 'number' ? property.default : undefined,
        });
        break;
      case 'enum':
        input = el('select', { ...common, required: required.has(name) },
          (property.enum ?? []).map(choice => el('option', {
            value: json(choice), selected: choice === property.default,
          }, String(choice))));
        break;
      case 'string':
        input = el('input', {
          ...common, type: 'text', required: required.has(name),
          value: typeof property.default === 'string' ? property.default : undefined,
        });
        break;
      default:
        input = el('textarea', { ...common, rows: 3, placeholder: 'JSON' },
          property.default !== undefined ? json(property.default) : '');
    }
    return el('div', { class: 'field' }, label, input, help);
  });
}

export class FieldError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
  }
}

/** The parameters the form's fields hold; an empty optional field is left out. */
export function readFields(form: HTMLFormElement): Record<string, unknown> {
  const parameters: Record<string, unknown> = {};
  for (const input of Array.from(form.querySelectorAll<HTMLInputElement>('[data-kind]'))) {
    const value = input.value.trim();
    switch (input.dataset.kind) {
      case 'boolean':
        parameters[input.name] = input.checked;
        break;
      case 'integer':
      case 'number':
        if (value !== '') parameters[input.name] = Number(value);
        break;
      case 'string':
        if (value !== '' || input.required) parameters[input.name] = input.value;
        break;
      default:
        if (value === '') break;
        try {
          parameters[input.name] = JSON.parse(value);
        } catch {
          throw new FieldError(input.name, 'not valid JSON');
        }
    }
  }
  return parameters;
}

/** A form field holding a JSON object (arguments, a connection's values), as the API takes
 * it; the error names the field. Empty means {}. */
export function jsonObject(text: FormDataEntryValue | null, field: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(String(text || '{}'));
  } catch {
    throw new Error(`${field}: not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error(`${field}: a JSON object is needed, like {"name": "value"}`);
  }
  return parsed as Record<string, unknown>;
}
