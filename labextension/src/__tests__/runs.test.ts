import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import { RunState, RunStep, failingCellIndex, failureOf, progress, serverErrorText } from '../runs';

const step = (order: number, status: string, file = 'etl.ipynb', cellId = `c${order}`): RunStep => ({
  order,
  name: `${file}#${order}`,
  file,
  kind: 'notebook',
  cell_index: order,
  cell_id: cellId,
  sql: false,
  status
});

const failed = (error: RunState['error'], steps: RunStep[]): RunState => ({
  id: 'r1',
  directory: 'jobs/daily',
  status: 'failed',
  steps,
  error
});

test('progress counts finished steps', () => {
  assert.deepEqual(progress([step(1, 'succeeded'), step(2, 'running'), step(3, 'pending')]), {
    done: 1,
    total: 3,
    text: '1 of 3 steps done'
  });
});

test('a failed notebook step maps to its notebook and cell', () => {
  const run = failed(
    { file: 'etl.ipynb', cell_id: 'c2', cell_index: 4, line: 3, summary: 'ZeroDivisionError: division by zero', traceback: 'Traceback…' },
    [step(1, 'succeeded'), step(2, 'failed'), step(3, 'not_run')]
  );
  const failure = failureOf(run);
  assert.ok(failure);
  assert.equal(failure.path, 'jobs/daily/etl.ipynb');
  assert.equal(failure.cellId, 'c2');
  assert.match(failure.text, /^ZeroDivisionError: division by zero \(line 3\)\n\nTraceback/);
  assert.equal(failingCellIndex(['c0', 'c1', 'c2'], failure), 2);
  // The cell id changed since the run (cell re-created): fall back to its index.
  assert.equal(failingCellIndex(['x', 'y', 'z', 'w', 'v'], failure), 4);
  assert.equal(failingCellIndex(['x'], failure), -1);
});

test('no failing cell for runs that succeeded or failed outside a notebook', () => {
  assert.equal(failureOf({ ...failed(null, []), status: 'succeeded' }), null);
  assert.equal(failureOf(failed({ file: 'load.sql', message: 'syntax error' }, [step(1, 'failed', 'load.sql')])), null);
  assert.equal(failureOf(failed({ message: 'the run ended before it started' }, [])), null);
  // The error names no cell: the failed step does.
  const failure = failureOf(failed({ message: 'boom' }, [step(1, 'failed')]));
  assert.deepEqual(failure && [failure.cellId, failure.text], ['c1', 'boom']);
});

test('server errors in words', () => {
  assert.equal(serverErrorText(400, { message: 'bad cron expression', field: 'schedule' }), 'bad cron expression (schedule)');
  assert.equal(serverErrorText(404, { message: 'no job x', field: 'job' }), 'no job x');
  assert.match(serverErrorText(403, ''), /log in/);
  assert.equal(serverErrorText(500, null), 'the server answered 500');
});
