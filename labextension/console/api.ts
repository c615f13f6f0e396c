// The server's API, typed by openapi.d.ts (generated from the app's OpenAPI document by
// scripts/console_types.py). Every change sends X-Nbplane-Csrf: the server refuses a
// cookie-authenticated change without it, so another site cannot use the sign-in cookie.
import type { components } from './openapi';

export type Schemas = components['schemas'];
export type Caller = Schemas['DescribeCaller'];
export type Job = Schemas['DescribeJob'];
export type Deployment = Schemas['DescribeDeployment'];
export type UpdateDeployment = Schemas['UpdateDeployment'];
export type JobExecution = Schemas['DescribeJobExecution'];
export type JobExecutionPage = Schemas['JobExecutionPage'];
export type Step = Schemas['DescribeRunStep-Output'];
export type Version = Schemas['DescribeVersion'];
export type Execution = Schemas['DescribeExecution'];
export type ExecutionPage = Schemas['ExecutionPage'];
export type Session = Schemas['DescribeSession'];
export type ResourceClass = Schemas['DescribeResourceClass'];
export type Connection = Schemas['DescribeConnection'];
export type CreateConnection = Schemas['CreateConnection'];
export type Team = Schemas['DescribeTeam'];
export type Authenticator = Schemas['DescribeAuthenticator'];

/** A notebook API as GET /api/v1/notebooks describes it (the document types it loosely). */
export interface NotebookApi {
  name: string;
  status: 'ok' | 'broken';
  reason: string | null;
  engine: string | null;
  timeout: number | null;
  input: JsonSchema | null;
  output: JsonSchema | null;
}
export interface JsonSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  enum?: unknown[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  items?: JsonSchema;
}

export const CSRF_HEADER = 'X-Nbplane-Csrf';

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Where an API answer's path parameters go: each one encoded. */
export function path(strings: TemplateStringsArray, ...values: string[]): string {
  return strings.reduce((made, part, index) =>
    made + part + (index < values.length ? encodeURIComponent(values[index]) : ''), '');
}

export async function call<T>(method: string, url: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET') headers[CSRF_HEADER] = '1';
  const options: RequestInit = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }
  let response: Response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    throw new ApiError(0, `The nbplane server cannot be reached (${String(error)}).`);
  }
  if (response.status === 204) return null as T;
  let data: unknown = null;
  try {
    data = await response.json();
  } catch {
    // not JSON: the status line has to do
  }
  if (!response.ok) {
    const said = data as { message?: string; field?: string } | null;
    const field = said?.field ? ` (${said.field})` : '';
    throw new ApiError(response.status,
      `${said?.message ?? response.statusText}${field} — HTTP ${response.status}`);
  }
  return data as T;
}

export const api = {
  me: () => call<Caller>('GET', '/api/v1/me'),
  authenticator: () => call<Authenticator>('GET', '/api/v1/auth'),
  signIn: (token: string) => call<Caller>('POST', '/api/v1/auth/sign-in', { token }),
  signOut: () => call<null>('POST', '/api/v1/auth/sign-out'),
  teams: () => call<Team[]>('GET', '/api/v1/teams'),
  jobs: (team: string) => call<Job[]>('GET', path`/api/v1/teams/${team}/jobs`),
  job: (team: string, job: string) => call<Job>('GET', path`/api/v1/teams/${team}/jobs/${job}`),
  versions: (team: string, job: string) =>
    call<Version[]>('GET', path`/api/v1/teams/${team}/jobs/${job}/versions`),
  updateDeployment: (team: string, job: string, change: UpdateDeployment) =>
    call<Deployment>('PATCH', path`/api/v1/teams/${team}/jobs/${job}/deployment`, change),
  runJob: (team: string, job: string, args?: Record<string, unknown>) =>
    call<JobExecution>('POST', path`/api/v1/teams/${team}/jobs/${job}/executions`,
      args ? { arguments: args } : {}),
  jobExecutions: (team: string, job: string) =>
    call<JobExecutionPage>('GET', path`/api/v1/teams/${team}/jobs/${job}/executions` + '?limit=20'),
  jobExecution: (team: string, job: string, id: string) =>
    call<JobExecution>('GET', path`/api/v1/teams/${team}/jobs/${job}/executions/${id}`),
  cancelJobExecution: (team: string, job: string, id: string) =>
    call<JobExecution>('POST', path`/api/v1/teams/${team}/jobs/${job}/executions/${id}/cancel`),
  notebooks: () => call<NotebookApi[]>('GET', '/api/v1/notebooks'),
  notebook: (name: string) => call<NotebookApi>('GET', path`/api/v1/notebooks/${name}`),
  submit: (name: string, parameters: Record<string, unknown>) =>
    call<Execution>('POST', path`/api/v1/notebooks/${name}/executions`, { parameters }),
  executions: (notebook: string) =>
    call<ExecutionPage>('GET', '/api/v1/executions?limit=20&notebook=' + encodeURIComponent(notebook)),
  /** The execution, once it ended or after ``wait`` seconds: the server answers when it knows. */
  execution: (id: string, wait = 0) =>
    call<Execution>('GET', path`/api/v1/executions/${id}` + (wait ? `?wait=${wait}` : '')),
  cancelExecution: (id: string) => call<Execution>('POST', path`/api/v1/executions/${id}/cancel`),
  sessions: () => call<Session[]>('GET', '/api/v1/sessions'),
  resourceClasses: () => call<ResourceClass[]>('GET', '/api/v1/sessions/resource-classes'),
  startSession: (resourceClass: string) =>
    call<Session>('POST', '/api/v1/sessions', { resource_class: resourceClass }),
  sessionAction: (id: string, method: string, suffix: string) =>
    call<Session | null>(method, path`/api/v1/sessions/${id}` + suffix),
  connections: () => call<Connection[]>('GET', '/api/v1/connections'),
  createConnection: (body: CreateConnection) => call<Connection>('POST', '/api/v1/connections', body),
  deleteConnection: (name: string) => call<null>('DELETE', path`/api/v1/connections/${name}`),
  grant: (name: string, team: string) =>
    call<Connection>('POST', path`/api/v1/connections/${name}/grants`, { team }),
};

/** Reads a streamed text answer (a job execution's log with ``follow``) chunk by chunk until
 * the server ends it or ``signal`` aborts it. */
export async function follow(url: string, signal: AbortSignal, chunk: (text: string) => void): Promise<void> {
  const response = await fetch(url, { credentials: 'same-origin', signal });
  if (!response.ok || !response.body) {
    throw new ApiError(response.status, `the log cannot be read — HTTP ${response.status}`);
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    chunk(value);
  }
}
