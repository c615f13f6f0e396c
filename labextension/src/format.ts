/** How the jobs page words times and schedules. Pure functions: unit-tested without JupyterLab. */

/** Seconds as people read them: "0.4 s", "42 s", "3 min 5 s", "2 h 10 min"; '' when unknown. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) {
    return '';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)} s`;
  }
  const whole = Math.round(seconds);
  if (whole < 60) {
    return `${whole} s`;
  }
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) {
    return `${minutes} min ${whole % 60} s`;
  }
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** A deployment's schedule in words: the cron expression with its time zone, or why none. */
export function describeSchedule(
  deployment: { schedule: string | null; timezone: string; enabled: boolean } | null
): string {
  if (!deployment) {
    return 'not deployed';
  }
  if (!deployment.schedule) {
    return 'on demand';
  }
  return `${deployment.schedule} (${deployment.timezone})`;
}

/** An ISO time as the browser's locale shows it; '' for none. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}
