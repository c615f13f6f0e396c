"""Deployed jobs: registry, versions, deployments, schedules and job executors."""
