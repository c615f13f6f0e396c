import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import {
  RunState,
  RunStep,
  StepOutputs,
  failingCellIndex,
  failureOf,
  outputsByCell,
  plainLog,
  progress,
  rememberedFailure,
  serverErrorText,
  stepLabel,
  stepOffset
} from '../runs';

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

test('a step is named by its run-order number, then its cell as JupyterLab counts cells', () => {
  // cell_index 4 is the fifth cell (a markdown cell before it counts too)
  assert.equal(stepLabel({ ...step(3, 'succeeded'), cell_index: 4 }), 'step 3 · cell 5 of etl.ipynb');
  assert.equal(stepLabel({ ...step(2, 'running'), cell_index: 0, sql: true }), 'step 2 · cell 1 of etl.ipynb (SQL)');
  assert.equal(
    stepLabel({ ...step(4, 'pending', '20_load.py'), kind: 'python', cell_index: null, cell_id: null }),
    'step 4 · 20_load.py'
  );
});

test("a notebook's badges count on from the steps of the job's earlier files", () => {
  const steps = [
    step(1, 'pending', '2_extract.py'),
    step(2, 'pending', '10_clean.ipynb'),
    step(3, 'pending', '10_clean.ipynb'),
    step(4, 'pending', '20_load.sql')
  ];
  assert.equal(stepOffset(steps, '2_extract.py'), 0);
  assert.equal(stepOffset(steps, '10_clean.ipynb'), 1);
  assert.equal(stepOffset(steps, '20_load.sql'), 3);
  // without a step yet: after the files before it in natural order (2 before 10)
  assert.equal(stepOffset(steps, '15_new.ipynb'), 3);
  assert.equal(stepOffset(steps, '1_first.ipynb'), 0);
  assert.equal(stepOffset([], 'etl.ipynb'), 0);
});

test('the log loses terminal escapes and carriage-return redraws', () => {
  assert.equal(plainLog('\x1b[1m▶ 1/2\x1b[0m etl.ipynb cell 2\n'), '▶ 1/2 etl.ipynb cell 2\n');
  assert.equal(plainLog('10%\r50%\r100%\r\n'), '10%\n50%\n100%\r\n');
  assert.equal(plainLog('  | 42\n'), '  | 42\n');
});

test("a run's outputs go to their cells, found by id, else by position", () => {
  const outputs = (order: number, file: string, cellId: string | null, cellIndex: number): StepOutputs => ({
    order,
    file,
    cell_id: cellId,
    cell_index: cellIndex,
    status: 'succeeded',
    outputs: [{ output_type: 'stream', name: 'stdout', text: `${order}\n` }]
  });
  const steps = [
    outputs(1, 'a.ipynb', 'x', 0),
    outputs(2, 'a.ipynb', 'moved', 1),
    outputs(3, 'a.ipynb', null, 2),
    outputs(4, 'a.ipynb', 'gone', 9),
    outputs(5, 'b.ipynb', 'x', 0)
  ];
  const placed = outputsByCell(['x', 'md', 'y', 'moved'], 'a.ipynb', steps);
  assert.deepEqual(
    placed.map(([index, found]) => [index, found.order]),
    [
      [0, 1],
      [3, 2],
      [2, 3]
    ]
  );
  // a failed step keeps what it printed; its error is the failing-cell mark's to show
  const failedStep: StepOutputs = {
    ...outputs(1, 'a.ipynb', 'x', 0),
    status: 'failed',
    outputs: [
      { output_type: 'stream', name: 'stdout', text: 'hello\n' },
      { output_type: 'error', ename: 'ZeroDivisionError', evalue: 'division by zero', traceback: [] }
    ]
  };
  const [[, shown]] = outputsByCell(['x'], 'a.ipynb', [failedStep]);
  assert.deepEqual(shown.outputs, [{ output_type: 'stream', name: 'stdout', text: 'hello\n' }]);
});

test('a failure the run records kept is marked like a fresh one', () => {
  const failure = rememberedFailure('jobs/daily', {
    file: 'etl.ipynb',
    cell_id: 'c2',
    cell_index: 4,
    line: 2,
    summary: 'ValueError: bad'
  });
  assert.ok(failure);
  assert.equal(failure.path, 'jobs/daily/etl.ipynb');
  assert.equal(failure.cellIndex, 4);
  assert.equal(failure.text, 'ValueError: bad (line 2)');
  assert.equal(rememberedFailure('jobs/daily', null), null);
  assert.equal(rememberedFailure('jobs/daily', { file: 'load.py', message: 'failed' }), null);
});
