import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { describeSchedule, formatDuration, formatTime } from '../format';
import { browserTimezone, checkDeployArguments, checkTimezone, suggestName } from '../validation';

test('time zones: IANA names only; empty keeps the deployed one', () => {
  for (const zone of ['UTC', 'Europe/Paris', 'America/Argentina/Buenos_Aires', 'Etc/GMT+5']) {
    assert.deepEqual(checkTimezone(` ${zone} `), { ok: true, value: zone }, zone);
  }
  assert.deepEqual(checkTimezone('  '), { ok: true, value: null });
  for (const bad of ['Mars/Olympus', '+02:00', 'GMT+2:00', 'Europe/', 'europe paris', '../etc/passwd']) {
    const checked = checkTimezone(bad);
    assert.equal(checked.ok, false, bad);
    assert.equal(!checked.ok && checked.field, 'timezone');
    assert.match(!checked.ok ? checked.message : '', /IANA time zone name/, bad);
  }
  assert.equal(checkTimezone(browserTimezone()).ok, true, 'the default passes its own check');
});

test('deploy arguments: a JSON object named at its field; empty keeps the deployed ones', () => {
  assert.deepEqual(checkDeployArguments(''), { ok: true, value: null });
  assert.deepEqual(checkDeployArguments('{}'), { ok: true, value: {} });
  assert.deepEqual(checkDeployArguments('{"days": 7}'), { ok: true, value: { days: 7 } });
  for (const bad of ['[1]', '{days: 7}', '7']) {
    const checked = checkDeployArguments(bad);
    assert.equal(!checked.ok && checked.field, 'arguments', bad);
    assert.match(!checked.ok ? checked.message : '', /^arguments /, bad);
  }
});

test('job names suggested from a notebook pass the name check', () => {
  assert.equal(suggestName('Sales Report.ipynb'), 'sales-report');
  assert.equal(suggestName('__draft.ipynb'), 'draft');
  assert.equal(suggestName('???.ipynb'), 'job');
  assert.equal(suggestName('x'.repeat(80)).length, 63);
});

test('durations, schedules and times in words', () => {
  assert.equal(formatDuration(null), '');
  assert.equal(formatDuration(-1), '');
  assert.equal(formatDuration(0.42), '0.4 s');
  assert.equal(formatDuration(42.4), '42 s');
  assert.equal(formatDuration(185), '3 min 5 s');
  assert.equal(formatDuration(7800), '2 h 10 min');
  assert.equal(describeSchedule(null), 'not deployed');
  assert.equal(describeSchedule({ schedule: null, timezone: 'UTC', enabled: true }), 'on demand');
  assert.equal(
    describeSchedule({ schedule: '0 6 * * *', timezone: 'Europe/Paris', enabled: false }),
    '0 6 * * * (Europe/Paris)'
  );
  assert.equal(formatTime(null), '');
  assert.equal(formatTime('not a time'), 'not a time');
  assert.notEqual(formatTime('2026-12-07T18:00:00+00:00'), '');
});
