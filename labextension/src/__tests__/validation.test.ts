import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import {
  checkArguments,
  checkDirectory,
  checkName,
  checkOptionalName,
  checkRetries,
  checkRetryDelay,
  checkSchedule
} from '../validation';

test('names: lowercase, digits, _ . -, 1-63 characters', () => {
  assert.deepEqual(checkName(' daily-sales.v2 '), { ok: true, value: 'daily-sales.v2' });
  for (const bad of ['', 'Daily', '-x', 'a b', 'x'.repeat(64), 'job/1']) {
    const checked = checkName(bad, 'job');
    assert.equal(checked.ok, false, bad);
    assert.equal(!checked.ok && checked.field, 'job');
  }
  assert.equal(checkName('x'.repeat(63)).ok, true);
});

test('optional names: empty is none, anything else a name', () => {
  assert.deepEqual(checkOptionalName('  '), { ok: true, value: null });
  assert.deepEqual(checkOptionalName(' analytics ', 'team'), { ok: true, value: 'analytics' });
  const bad = checkOptionalName('Analytics', 'team');
  assert.equal(!bad.ok && bad.field, 'team');
});

test('arguments: a JSON object, empty is none', () => {
  assert.deepEqual(checkArguments(''), { ok: true, value: {} });
  assert.deepEqual(checkArguments('{"days": 7}'), { ok: true, value: { days: 7 } });
  const broken = checkArguments('{days: 7}');
  assert.equal(broken.ok, false);
  assert.match(!broken.ok ? broken.message : '', /not valid JSON/);
  for (const notObject of ['[1]', '7', 'null', '"x"']) {
    const checked = checkArguments(notObject);
    assert.match(!checked.ok ? checked.message : '', /must be a JSON object/, notObject);
  }
});

test('schedule: 5 or 6 cron fields; empty only when not required', () => {
  assert.deepEqual(checkSchedule(' 0  6 * * * ', true), { ok: true, value: '0 6 * * *' });
  assert.deepEqual(checkSchedule('0 0 6 * * *', true), { ok: true, value: '0 0 6 * * *' });
  assert.deepEqual(checkSchedule('@daily', true), { ok: true, value: '@daily' });
  assert.deepEqual(checkSchedule('', false), { ok: true, value: null });
  const empty = checkSchedule('  ', true);
  assert.match(!empty.ok ? empty.message : '', /required/);
  const short = checkSchedule('0 6 *', false);
  assert.match(!short.ok ? short.message : '', /has 3 fields/);
});

test('directory: relative to the root, never above it', () => {
  assert.deepEqual(checkDirectory('/jobs/daily/'), { ok: true, value: 'jobs/daily' });
  assert.deepEqual(checkDirectory(''), { ok: true, value: '' });
  assert.equal(checkDirectory('jobs/../../etc').ok, false);
});

test('retries: empty keeps the deployed value, else a whole number 0-10', () => {
  assert.deepEqual(checkRetries(' '), { ok: true, value: null });
  assert.deepEqual(checkRetries(' 3 '), { ok: true, value: 3 });
  assert.deepEqual(checkRetries('0'), { ok: true, value: 0 });
  for (const bad of ['11', '-1', '1.5', 'two', '1e1']) {
    const checked = checkRetries(bad);
    assert.equal(!checked.ok && checked.field, 'retries', bad);
  }
});

test('retry delay: seconds above 0, at most an hour', () => {
  assert.deepEqual(checkRetryDelay(''), { ok: true, value: null });
  assert.deepEqual(checkRetryDelay('0.5'), { ok: true, value: 0.5 });
  assert.deepEqual(checkRetryDelay('3600'), { ok: true, value: 3600 });
  for (const bad of ['0', '-5', '3601', 'soon', 'Infinity']) {
    const checked = checkRetryDelay(bad);
    assert.equal(!checked.ok && checked.field, 'retry_delay', bad);
  }
});
