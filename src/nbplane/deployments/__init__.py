"""Jobs on the server: versions, deployments, schedules, job executions and their executors."""
