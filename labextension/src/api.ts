/**
 * The client of nbplane's Jupyter server extension (`{base_url}nbplane/`, contract in
 * src/nbplane/jupyter/handlers.py). Requests carry Jupyter's own authentication; the nbplane
 * token stays on the Jupyter server and never reaches the browser or its storage.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { RunState, StepLocation, serverErrorText } from './runs';

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
export async function request<T>(
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

/** A file the server sends (the job's zip), as a blob. */
export async function download(path: string): Promise<Blob> {
  return (await send(path)).blob();
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

export interface LocalJob {
  directory: string;
  name: string;
  team: string | null;
  steps: StepLocation[];
}

export interface Deployment {
  version: string;
  schedule: string | null;
  timezone: string;
  enabled: boolean;
  arguments: Record<string, unknown>;
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

export type { RunState };

export function jobPath(team: string, name: string, ...rest: string[]): string {
  return ['jobs', encodeURIComponent(team), encodeURIComponent(name), ...rest].join('/');
}
