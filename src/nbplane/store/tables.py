"""Tables of nbplane's own database (SQLAlchemy Core: the ORM's import alone costs a tenth of a
short job run, and the store needs no identity map)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_dir", String(1024), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("job_name", String(255), nullable=False),
    Column("job_team", String(255)),
    Column("status", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("arguments", JSON, nullable=False),
    Column("db_url", String(1024), nullable=False),
    Column("resumed", Boolean, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("error", JSON),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("execution_id", String(36), index=True),
    UniqueConstraint("job_dir", "number", name="uq_job_runs_job_dir_number"),
)
"""``job_dir`` is the job's resolved directory for a run on a user's machine, and
``deployed:TEAM/JOB`` for a deployed job's execution; ``number`` counts the runs of each."""

job_run_steps = Table(
    "job_run_steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        Integer,
        ForeignKey("job_runs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("position", Integer, nullable=False),
    Column("name", String(1024), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("file", String(1024), nullable=False),
    Column("cell_number", Integer),
    Column("cell_id", String(255)),
    Column("status", String(32), nullable=False),
    Column("reason", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("duration", Float),
    Column("code_hash", String(64), nullable=False),
    Column("chain_hash", String(64), nullable=False, index=True),
    Column("error", JSON),
    Column("defined_names", JSON, nullable=False),
    Column("unpicklable", JSON, nullable=False),
    Column("outputs", JSON, nullable=False),
    Column("checkpoint", LargeBinary),
)

job_run_notebooks = Table(
    "job_run_notebooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        Integer,
        ForeignKey("job_runs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("file", String(1024), nullable=False),
    Column("content", Text, nullable=False),
)

job_state = Table(
    "job_state",
    metadata,
    Column("job_key", String(512), primary_key=True),
    Column("properties", JSON, nullable=False),
    Column("secrets", LargeBinary),
)
"""Properties (plain JSON) and secrets (Fernet ciphertext) kept per job between runs."""

executions = Table(
    "executions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("notebook", String(255), nullable=False, index=True),
    Column("notebook_version", String(64), nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("reason", Text),
    Column("error", JSON),
    Column("output", JSON),
    Column("has_output", Boolean, nullable=False),
    Column("engine", String(16), nullable=False),
    Column("timeout", Float, nullable=False),
    Column("retries", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("worker_id", String(255)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("cancel_requested", Boolean, nullable=False),
    Column("created_by", String(255)),
    Column("owner", String(255), index=True),
    Column("team", String(63)),
    Column("timings", JSON),
)
"""Notebook API executions; ``owner`` is the user who submitted one (only they and admins see
it), ``team`` the team they submitted it for, ``timings`` where its time went (null: from
before they were recorded)."""

execution_artifacts = Table(
    "execution_artifacts",
    metadata,
    Column(
        "execution_id",
        String(36),
        ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("kind", String(16), primary_key=True),
    Column("content", Text, nullable=False),
)
"""The executed notebook (``ipynb``) and its text output (``logs``), kept out of memory."""

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column(
        "user_id",
        Integer,
        ForeignKey("users.id", ondelete="CASCADE", name="api_tokens_user_id_fkey"),
    ),
)
"""Bearer tokens of the API; only a SHA-256 of each token is kept."""

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("admin", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("max_sessions", Integer),
)
"""``max_sessions`` overrides NBPLANE_SESSION_MAX_PER_USER for one user (set by an admin)."""

team_members = Table(
    "team_members",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("team", String(63), primary_key=True),
)
"""Which users belong to which teams; a team exists while it has a member or a job."""

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("team", String(63), nullable=False),
    Column("name", String(63), nullable=False),
    Column("description", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(255)),
    UniqueConstraint("team", "name", name="uq_jobs_team_name"),
)

job_versions = Table(
    "job_versions",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("steps", JSON, nullable=False),
    Column("archive", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(255)),
    Column("retention", JSON),
)
"""Uploaded archives, kept whole; a version's id is the SHA-256 of its bytes. ``retention`` is
what its config.ini's [retention] sets, read once on upload for the server's pruning."""

deployments = Table(
    "deployments",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("version", String(64), nullable=False),
    Column("schedule", String(255)),
    Column("timezone", String(64), nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("arguments", JSON, nullable=False),
    Column("resources", JSON, nullable=False),
    Column("timeout", Float, nullable=False),
    Column("retries", Integer, nullable=False, server_default="0"),
    Column("retry_delay", Float, nullable=False, server_default="60"),
    Column("retry_on", String(16), nullable=False, server_default="any"),
    Column("executor", String(32), nullable=False),
    Column("reason", Text),
    Column("next_run_at", DateTime(timezone=True), index=True),
    Column("deployed_at", DateTime(timezone=True), nullable=False),
    Column("deployed_by", String(255)),
    Column("notifications", JSON, nullable=False, server_default="[]"),
)
"""One deployment per job. ``next_run_at`` is the scheduler's claim: a replica that moves it
forward with a conditional UPDATE is the one that starts the run."""

job_executions = Table(
    "job_executions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("version", String(64), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("reason", Text),
    Column("error", JSON),
    Column("started_by", String(255), nullable=False),
    Column("scheduled_for", DateTime(timezone=True)),
    Column("arguments", JSON, nullable=False),
    Column("resources", JSON, nullable=False),
    Column("timeout", Float, nullable=False),
    Column("retries", Integer, nullable=False, server_default="0"),
    Column("retry_delay", Float, nullable=False, server_default="60"),
    Column("retry_on", String(16), nullable=False, server_default="any"),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("retry_at", DateTime(timezone=True)),
    Column("executor", String(32), nullable=False),
    Column("executor_state", JSON),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("cancel_requested", Boolean, nullable=False),
    Column("run_id", Integer),
    Column("token_hash", String(64), unique=True, index=True),
    UniqueConstraint("job_id", "scheduled_for", name="uq_job_executions_schedule"),
)
"""Executions of deployed jobs; a schedule's run is unique per due time, so two replicas can
never both start it. ``attempt`` is the number of the latest attempt: starting the next one is a
compare-and-set on it, so two replicas never both start the same attempt."""

job_execution_attempts = Table(
    "job_execution_attempts",
    metadata,
    Column(
        "execution_id",
        String(36),
        ForeignKey("job_executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("number", Integer, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("failure", String(16)),
    Column("reason", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)
"""Each attempt of a job execution: written with the execution's status, in one transaction."""

job_execution_logs = Table(
    "job_execution_logs",
    metadata,
    Column(
        "execution_id",
        String(36),
        ForeignKey("job_executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", Integer, primary_key=True),
    Column("offset", Integer, nullable=False),
    Column("text", Text, nullable=False),
)
"""A job execution's output in chunks, appended while it runs so it can be followed live."""

job_notifications = Table(
    "job_notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "execution_id",
        String(36),
        ForeignKey("job_executions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("target", Integer, nullable=False),
    Column("event", String(16), nullable=False),
    Column("address", Text, nullable=False),
    Column("sealed_url", Text),
    Column("to", JSON),
    Column("status", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    UniqueConstraint("execution_id", "target", "event", name="uq_job_notifications_event"),
)
"""The notifications outbox: one row per execution, target and event (unique, so two replicas
never both enqueue it), with where it goes copied in, so a later redeploy changes nothing sent.
``next_attempt_at`` is the sender's claim, moved on by a conditional UPDATE."""

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("owner", String(255), nullable=False, index=True),
    Column("anonymous", Boolean, nullable=False),
    Column("resource_class", String(63), nullable=False),
    Column("image", String(1024)),
    Column("directory", String(1024)),
    Column("repository", String(1024)),
    Column("commit", String(255)),
    Column("secrets", LargeBinary, nullable=False),
    Column("token_name", String(255)),
    Column("connections", JSON, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("action", String(16)),
    Column("reason", Text),
    Column("launcher", String(32), nullable=False),
    Column("launcher_state", JSON),
    Column("steps", JSON, nullable=False),
    Column("url", String(1024)),
    Column("ready", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ready_at", DateTime(timezone=True)),
    Column("last_activity_at", DateTime(timezone=True)),
    Column("hibernated_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
"""Users' Jupyter servers. ``secrets`` is Fernet ciphertext of the server's token, the
session's nbplane token and the user's environment; every status change is a conditional
UPDATE, so replicas sharing the database never both start, hibernate or delete a session."""

connections = Table(
    "connections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("description", Text),
    Column("is_default", Boolean, nullable=False),
    Column("keys", JSON, nullable=False),
    Column("secret", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(255)),
)
"""Named credentials an admin defines; ``secret`` is Fernet ciphertext of the values, ``keys``
their names (what list responses show)."""

connection_grants = Table(
    "connection_grants",
    metadata,
    Column(
        "connection_id",
        Integer,
        ForeignKey("connections.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("grantee_kind", String(8), primary_key=True),
    Column("grantee", String(255), primary_key=True),
)
"""Who may use a connection: a user (``grantee_kind`` 'user') or a team ('team')."""

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("renewed_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
"""Named leases (``control``: the replica running the background loops); a holder keeps its
lease by moving ``expires_at`` on before it passes, and anyone may take an expired one."""

login_renewals = Table(
    "login_renewals",
    metadata,
    Column(
        "token_id",
        Integer,
        ForeignKey("api_tokens.id", ondelete="CASCADE", name="login_renewals_token_id_fkey"),
        primary_key=True,
    ),
    Column("secret", LargeBinary, nullable=False),
    Column("renew_at", DateTime(timezone=True), nullable=False),
)
"""A login's way to be renewed with its identity source (an OpenID Connect refresh token,
sealed with NBPLANE_SECRET_KEY) and when next: the login's token ends when the source refuses."""
