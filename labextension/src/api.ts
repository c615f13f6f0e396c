/**
 * The client of nbplane's Jupyter server extension (`{base_url}nbplane/`, contract in
 * src/nbplane/jupyter/handlers.py). Requests carry Jupyter's own authentication; the nbplane
 * token stays on the Jupyter server and never reaches the browser or its storage.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { RunError, RunState, StepLocation, StepOutputs, serverErrorText } from './runs';

/** A refused request, in words, with the input at fault when the server names it. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field: string | null = null
  ) {
    super(message);
  }
}

async function send(
  path: string,
  init: RequestInit = {},
  query: Record<string, string> = {}
): Promise<Response> {
  const settings = ServerConnection.makeSettings();
  const search = Object.keys(query).length ? URLExt.objectToQueryString(query) : '';
  const url = URLExt.join(settings.baseUrl, 'nbplane', path) + search;
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(`cannot reach the Jupyter server: ${(error as Error).message}`, 0);
  }
  if (!response.ok) {
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: a proxy's page; its text is the message
    }
    const field =
      body && typeof body === 'object' && typeof (body as { field?: unknown }).field === 'string'
        ? (body as { field: string }).field
        : null;
    throw new ApiError(serverErrorText(response.status, body), response.status, field);
  }
  return response;
}

/** A JSON request; `body` is sent as JSON. */
async function request<T>(
  path: string,
  options: { method?: string; body?: unknown; query?: Record<string, string> } = {}
): Promise<T> {
  const init: RequestInit = { method: options.method ?? 'GET' };
  if (options.body !== undefined) {
    init.body = JSON.stringify(options.body);
  }
  const response = await send(path, init, options.query);
  if (response.status === 204) {
    return undefined as T;
  }
  return (await response.json()) as T;
}

function jobPath(team: string, name: string, ...rest: string[]): string {
  return ['jobs', encodeURIComponent(team), encodeURIComponent(name), ...rest].join('/');
}

/** Read a log from `offset` until the server has nothing new (it answers the same offset). */
async function followLog(path: string, offset: number, write: (chunk: LogChunk) => void): Promise<void> {
  for (;;) {
    const chunk = await request<LogChunk>(path, { query: { offset: String(offset) } });
    if (chunk.offset === offset) {
      return;
    }
    write(chunk);
    offset = chunk.offset;
  }
}

// Login: the token stays with the Jupyter server.

/** The login, and whether the server at `url` (default: the one logged in to) offers OAuth. */
export function loginStatus(url?: string): Promise<LoginStatus> {
  return request<LoginStatus>('status', url === undefined ? {} : { query: { url } });
}

export function logIn(url: string, token: string): Promise<LoginStatus> {
  return request<LoginStatus>('login', { method: 'POST', body: { url, token } });
}

export function logOut(): Promise<LoginStatus> {
  return request<LoginStatus>('logout', { method: 'POST' });
}

/** An OAuth login at the server at `url`: the provider's page to open in another tab. */
export function startOAuth(url: string): Promise<{ authorize_url: string }> {
  return request<{ authorize_url: string }>('oauth/start', { query: { url } });
}

// Local jobs and their runs.

export function createJob(job: CreateJobDirectory): Promise<LocalJob> {
  return request<LocalJob>('jobs', { method: 'POST', body: job });
}

/** nbplane's run records of every job under the Jupyter root, newest first. */
export function listHistory(limit = 50): Promise<{ runs: HistoryRun[] }> {
  return request<{ runs: HistoryRun[] }>('history', { query: { limit: String(limit) } });
}

/** A local job folder and its steps in run order. */
export function describeLocalJob(directory: string): Promise<LocalJob> {
  return request<LocalJob>('job', { query: { directory } });
}

/** The job's steps as one notebook, in a new job folder (`nbplane job to-notebook`). */
export function convertJob(directory: string, to?: string): Promise<ConvertedJob> {
  return request<ConvertedJob>('job/notebook', { method: 'POST', body: to ? { directory, to } : { directory } });
}

export function startRun(run: StartRun): Promise<{ id: string }> {
  return request<{ id: string }>('runs', { method: 'POST', body: run });
}

export function describeRun(id: string): Promise<RunState> {
  return request<RunState>(`runs/${id}`);
}

export function cancelRun(id: string): Promise<RunState> {
  return request<RunState>(`runs/${id}`, { method: 'DELETE' });
}

/** What each notebook step cell of a run showed. */
export function runOutputs(id: string): Promise<{ run_number: number; steps: StepOutputs[] }> {
  return request<{ run_number: number; steps: StepOutputs[] }>(`runs/${id}/outputs`);
}

/** The page of a run's executed notebooks (opened in a new tab: Jupyter's cookie signs it in). */
export function runPageUrl(id: string): string {
  return URLExt.join(ServerConnection.makeSettings().baseUrl, 'nbplane', 'runs', id, 'page');
}

/** The run's log from `offset` up to now, piece by piece. */
export function followRunLog(id: string, offset: number, write: (chunk: LogChunk) => void): Promise<void> {
  return followLog(`runs/${id}/log`, offset, write);
}

// Jobs on the nbplane server logged in to.

export function deployDirectory(deploy: DeployDirectory): Promise<Deployed> {
  return request<Deployed>('deploy', { method: 'POST', body: deploy });
}

/** The caller's deployed jobs, in all their teams. */
export function listJobs(): Promise<RemoteJobs> {
  return request<RemoteJobs>('jobs');
}

export function describeJob(team: string, name: string): Promise<RemoteJobDetails> {
  return request<RemoteJobDetails>(jobPath(team, name));
}

/** Run the deployed version now; `args` null: the deployment's arguments. */
export function executeJob(team: string, name: string, args: Record<string, unknown> | null): Promise<Execution> {
  return request<Execution>(jobPath(team, name, 'executions'), {
    method: 'POST',
    body: args ? { arguments: args } : {}
  });
}

/** An execution's log from the start up to now, piece by piece. */
export function followExecutionLog(
  team: string,
  name: string,
  execution: string,
  write: (chunk: LogChunk) => void
): Promise<void> {
  return followLog(jobPath(team, name, 'executions', execution, 'logs'), 0, write);
}

/** The deployed version of a job, as a zip. */
export async function downloadJob(team: string, name: string): Promise<Blob> {
  return (await send(jobPath(team, name, 'download'))).blob();
}

/** Pause (false) or resume (true) the deployment's schedule. */
export function setScheduleEnabled(team: string, name: string, enabled: boolean): Promise<Deployment> {
  return request<Deployment>(jobPath(team, name, 'deployment'), { method: 'PATCH', body: { enabled } });
}

/** `force`: cancel its running executions first. */
export function deleteJob(team: string, name: string, force: boolean): Promise<void> {
  return request<void>(jobPath(team, name), { method: 'DELETE', query: force ? { force: 'true' } : {} });
}

export interface LoginStatus {
  logged_in: boolean;
  server_url: string | null;
  user: string | null;
  admin: boolean;
  teams: string[];
  in_session: boolean;
  oauth_available: boolean;
  message: string | null;
}

export interface CreateJobDirectory {
  name: string;
  /** The folder to create the job in; '' is the Jupyter root. */
  directory: string;
  team?: string;
  /** A notebook to copy in instead of the example one. */
  notebook?: string;
}

export interface ConvertedJob {
  notebook: string;
  /** The new job folder holding it. */
  directory: string;
  steps: string[];
  copied: string[];
}

/** A run record of a job under the Jupyter root (`GET history`). */
export interface HistoryRun {
  id: number;
  number: number;
  directory: string;
  job: string;
  status: string;
  started_at: string;
  finished_at: string | null;
  duration: number | null;
  arguments: Record<string, unknown>;
  resumed: boolean;
  steps: number;
  failing_step: {
    name: string | null;
    file: string | null;
    cell: number | null;
    message: string | null;
    /** The error alone, e.g. "ValueError: no rows". */
    summary: string | null;
  } | null;
}

export interface LocalJob {
  directory: string;
  name: string;
  team: string | null;
  steps: StepLocation[];
  /** Where the job last failed, from its run records (`job?directory=` only; null: nowhere). */
  failure?: RunError | null;
}

export interface StartRun {
  directory: string;
  arguments: Record<string, unknown>;
  /** From the changed or failed step. */
  resume: boolean;
}

/** What to deploy: the job folder, and the deployment's changes (absent: kept). */
export interface DeployDirectory {
  directory: string;
  team?: string;
  name?: string;
  /** '' removes the schedule. */
  schedule?: string;
  /** IANA time zone the schedule is read in. */
  timezone?: string;
  enabled: boolean;
  /** What every execution gets unless it names its own. */
  arguments?: Record<string, unknown>;
  /** Attempts after a failed one (0-10). */
  retries?: number;
  /** Seconds before the first retry; each later wait doubles, at most 1 h. */
  retry_delay?: number;
  /** 'platform': not a failure of the job's own code. */
  retry_on?: 'any' | 'platform';
  reason?: string;
  /** Execute it once deployed. */
  run_first: boolean;
}

export interface Deployed {
  team: string;
  name: string;
  version: { id: string };
  execution: Execution | null;
}

export interface Deployment {
  version: string;
  schedule: string | null;
  timezone: string;
  enabled: boolean;
  arguments: Record<string, unknown>;
  retries: number;
  retry_delay: number;
  retry_on: 'any' | 'platform';
  reason: string | null;
  next_run_at: string | null;
  deployed_at: string;
  deployed_by: string | null;
  executor: string;
}

export interface Execution {
  id: string;
  status: string;
  reason?: string | null;
  started_by?: string | null;
  created_at: string;
  started_at?: string | null;
  finished_at?: string | null;
  arguments?: Record<string, unknown> | null;
}

export interface RemoteJob {
  name: string;
  team: string;
  description: string | null;
  deployment: Deployment | null;
  last_executions: Execution[];
}

export interface RemoteJobDetails extends RemoteJob {
  executions: Execution[];
  executions_total: number;
  properties: Record<string, unknown>;
}

export interface RemoteJobs {
  user: string;
  teams: string[];
  jobs: RemoteJob[];
}

export interface LogChunk {
  text: string;
  offset: number;
}
