import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { CellInfo, hasStepTag, isSql, numberSteps, toggleStepTag } from '../steps';

const cell = (id: string, tags: string[], source = 'x = 1', type = 'code'): CellInfo => ({
  id,
  type,
  tags,
  source
});

test('step cells are numbered in cell order; others are skipped', () => {
  const labels = numberSteps([
    cell('a', ['step']),
    cell('b', []),
    cell('c', ['step'], '# heading', 'markdown'),
    cell('d', ['vdk', 'parameters'], '\n%%sql\nSELECT 1'),
    cell('e', ['step'])
  ]);
  assert.deepEqual([...labels.entries()], [
    ['a', { number: 1, sql: false }],
    ['d', { number: 2, sql: true }],
    ['e', { number: 3, sql: false }]
  ]);
});

test('SQL cells: %%sql or %%vdksql on the first line only', () => {
  assert.equal(isSql('%%sql\nSELECT 1'), true);
  assert.equal(isSql('%%vdksql\nSELECT 1'), true);
  assert.equal(isSql('%%sqlite\nSELECT 1'), false);
  assert.equal(isSql('x = 1\n%%sql'), false);
});

test('toggling adds step, or removes step and vdk, keeping other tags', () => {
  assert.deepEqual(toggleStepTag(['parameters']), ['parameters', 'step']);
  assert.deepEqual(toggleStepTag(['step', 'parameters']), ['parameters']);
  assert.deepEqual(toggleStepTag(['vdk']), []);
});

test('step or vdk tags make a step', () => {
  assert.equal(hasStepTag(['parameters', 'step']), true);
  assert.equal(hasStepTag(['vdk']), true);
  assert.equal(hasStepTag(['parameters', 'steps']), false);
});
