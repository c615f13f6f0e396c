"""The one place that reads ``NBPLANE_*`` environment variables."""

from __future__ import annotations

from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from nbplane.errors import ConfigError
from nbplane.platform.logs import LogFormat, LogLevel

VERSION = version("nbplane")
"""The images built from deploy/images are tagged with it (never latest), as the chart's are."""
IMAGE = f"ghcr.io/nbplane/nbplane:{VERSION}"
SESSION_IMAGE = f"ghcr.io/nbplane/session:{VERSION}"


class Settings(BaseSettings):
    """nbplane's settings; each field is the environment variable ``NBPLANE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="NBPLANE_", extra="ignore")

    home: Path = Field(
        default=Path.home() / ".nbplane",
        description="Directory for nbplane's own state: run records, checkpoints, secrets key.",
    )
    store_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of nbplane's own database (default: SQLite in NBPLANE_HOME).",
    )
    store_migrate: bool = Field(
        default=True,
        description="Whether `nbplane serve` and `nbplane worker` bring the database's schema to "
        "this version at start. Off (as the Helm chart sets it, running `nbplane db upgrade` "
        "once per install or upgrade instead), they refuse a schema that is not current.",
    )
    lease_duration_seconds: float = Field(
        default=8.0,
        gt=0,
        description="How long the replica running the background loops (scheduler, job "
        "monitor, notifier, retention, sessions) holds its lease without renewing it: another "
        "replica takes over about this long after the holder dies (at once when it stops).",
    )
    lease_renew_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often that replica renews its lease, and others try to take it; at "
        "most half NBPLANE_LEASE_DURATION_SECONDS. A holder that cannot renew stops its loops "
        "this long before its lease expires.",
    )
    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the database jobs query and ingest into, when neither "
        "--db nor the job's config names one (default: SQLite in NBPLANE_HOME).",
    )
    secret_key: str | None = Field(
        default=None,
        description="Fernet key encrypting job secrets at rest (default: a key file in "
        "NBPLANE_HOME, created on first use with mode 0600).",
    )
    ingest_batch_size: int = Field(
        default=1000, ge=1, description="Rows buffered per table before ingestion writes them."
    )
    warm_idle_seconds: float = Field(
        default=1800,
        gt=0,
        description="A warm runner (`nbplane job warm start`) exits after this long without a run.",
    )

    log_level: LogLevel = Field(
        default="info",
        description="`nbplane serve` and `nbplane worker`: what they log (debug, info, warning, "
        "error); info includes a line per HTTP request (probes and scrapes at debug).",
    )
    log_format: LogFormat = Field(
        default="text",
        description="`nbplane serve` and `nbplane worker`: 'text' lines, or 'json' (one object "
        "per line: time, level, logger, message and fields) for a log collector.",
    )

    worker_heartbeat_seconds: float = Field(
        default=2.0, gt=0, description="How often a worker marks its running executions alive."
    )
    worker_stale_seconds: float = Field(
        default=15.0,
        gt=0,
        description="A running execution not marked alive for this long lost its worker: it is "
        "retried if its contract allows, else it fails as 'worker lost'.",
    )
    worker_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        description="The fallback where no signal reaches a process (SQLite shared by several "
        "processes; PostgreSQL while its LISTEN connection is down): how often a worker looks "
        "for queued executions, and at most how long a ?wait= request goes without reading its "
        "execution again.",
    )

    url: str | None = Field(
        default=None,
        description="URL of the nbplane server the CLI talks to (default: what `nbplane login` "
        "saved).",
    )
    token: str | None = Field(
        default=None,
        description="Bearer token for that server (default: what `nbplane login` saved).",
    )
    job_server_url: str | None = Field(
        default=None,
        description="The nbplane server's URL as deployed jobs reach it: their only way to "
        "their properties, secrets, connections and records (default: "
        "NBPLANE_SESSION_PUBLIC_URL, then the address the server listens on).",
    )
    job_executor: str = Field(
        default="local",
        description="Where deployed jobs run: 'local' (a process each) or 'kubernetes' (a Job "
        "each).",
    )
    kubernetes_namespace: str = Field(
        default="default", description="Namespace of the Kubernetes job executor."
    )
    kubernetes_image: str = Field(
        default=IMAGE,
        description="Image the Kubernetes job executor runs; it must have nbplane installed "
        "(default: the nbplane image of this version, deploy/images/nbplane).",
    )
    kubernetes_python: str = Field(
        default="python",
        description="The image's Python, which runs `-m nbplane job run-execution` in each Job.",
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig for the Kubernetes executor (default: in-cluster, then "
        "~/.kube/config).",
    )
    schedule_missed_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        description="A schedule's run missed while no server ran is run once on start if it was "
        "due within this many seconds; older misses are skipped and recorded.",
    )
    retention_keep_runs: int = Field(
        default=100,
        ge=0,
        description="Run records kept per job (a deployed job: executions, each with its run "
        "and log): the newest N; 0 keeps all. A job's config.ini [retention] keep_runs wins.",
    )
    retention_keep_days: float = Field(
        default=30.0,
        ge=0,
        description="Run records (executions) older than this many days are deleted, except a "
        "job's newest; 0 never. config.ini [retention] keep_days wins.",
    )
    retention_keep_outputs: int = Field(
        default=20,
        ge=0,
        description="Executed notebooks, step outputs and execution logs are kept for the "
        "newest M runs of a job only; 0 for every kept run. config.ini [retention] "
        "keep_outputs wins.",
    )
    retention_interval_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="How often the server prunes deployed jobs' executions, runs and logs "
        "(first a minute after it starts); 0 never (`nbplane job prune` prunes local runs).",
    )
    notify_allow_private_hosts: bool = Field(
        default=False,
        description="Let deployments' webhooks reach loopback and private addresses (10/8, "
        "172.16/12, 192.168/16, fc00::/7...). Off, a webhook whose host is or resolves to one is "
        "refused, so a team cannot make the server call its internal services; link-local "
        "addresses (169.254/16: cloud metadata servers) are refused even when on.",
    )
    notify_attempts: int = Field(
        default=5, ge=1, le=20, description="Attempts to send a notification before giving up."
    )
    notify_retry_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Wait before a failed notification's second attempt; it doubles with each "
        "further one.",
    )
    smtp_host: str | None = Field(
        default=None,
        description="SMTP server that sends notification emails; without it, deployments may "
        "not name email addresses.",
    )
    smtp_port: int = Field(
        default=25, ge=1, le=65535, description="Its port (usually 25, 587 starttls, 465 ssl)."
    )
    smtp_tls: Literal["none", "starttls", "ssl"] = Field(
        default="starttls",
        description="'starttls' (upgrade the connection, refusing a server that cannot), 'ssl' "
        "(TLS from the first byte) or 'none' (clear text: a relay on the same host only).",
    )
    smtp_username: str | None = Field(default=None, description="SMTP login, if it needs one.")
    smtp_password: str | None = Field(default=None, description="Password of that login.")
    smtp_sender: str = Field(
        default="nbplane@localhost", description="The From address of notification emails."
    )

    admin_token: SecretStr | None = Field(
        default=None,
        description="The first admin's token, from a Secret (at least 32 characters; surrounding "
        "whitespace is ignored): each server start makes sure NBPLANE_ADMIN_USER exists, is an "
        "admin and holds it (kept hashed, as the token named 'bootstrap'); a new value replaces "
        "the old one. Unset: no bootstrap.",
    )
    admin_user: str = Field(default="admin", description="The user NBPLANE_ADMIN_TOKEN speaks for.")

    authenticator: str = Field(
        default="token",
        description="How people log in besides nbplane's own tokens (which always work, for the "
        "CLI and automation): 'token' (tokens only), 'oidc' (an OpenID Connect provider), "
        "'header' (a gateway's user header), 'app' (ask another application), or a plugin's "
        "name or package.module:Class. Default: 'oidc' when the NBPLANE_OAUTH_* endpoints are "
        "set (the settings of earlier versions), else 'token'.",
    )
    header_user: str = Field(
        default="X-Forwarded-User",
        description="header: the request header in which the gateway names the user.",
    )
    header_groups: str = Field(
        default="X-Forwarded-Groups",
        description="header: the request header listing the user's groups, comma-separated; "
        "when present they replace the user's teams.",
    )
    header_proxies: str = Field(
        default="",
        description="header: the gateway's addresses or CIDRs, comma-separated: the only ones "
        "whose user and groups headers are believed. A request from elsewhere carrying them is "
        "refused (401).",
    )
    app_url: str | None = Field(
        default=None,
        description="app: the application's endpoint nbplane asks who a browser (its session "
        "cookie) or a bearer token is; it answers a JSON object with 'user', optionally "
        "'groups' and 'connections'.",
    )
    app_cookie: str = Field(
        default="sessionid",
        description="app: the application's session cookie a browser brings, forwarded as is.",
    )
    app_cache_seconds: float = Field(
        default=30.0,
        ge=0,
        description="app: how long the application's answer for a cookie or token is reused.",
    )
    oidc_issuer: str | None = Field(
        default=None,
        description="oidc: the provider's issuer URL; its /.well-known/openid-configuration "
        "names the endpoints and the signing keys.",
    )
    oidc_client_id: str | None = Field(
        default=None,
        description="oidc: nbplane's client id at the provider (default: NBPLANE_OAUTH_CLIENT_ID).",
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None,
        description="oidc: the client's secret, for the browser login the server runs (the CLI "
        "logs in as a public client with PKCE).",
    )
    oidc_refresh_seconds: float = Field(
        default=300.0,
        gt=0,
        description="oidc: how often a login's refresh token is presented to the provider; the "
        "nbplane token of the login ends when the provider refuses it.",
    )

    oauth_authorize_url: str | None = Field(
        default=None,
        description="Earlier versions' OAuth2 settings, still read by the oidc authenticator "
        "without an issuer: the provider's authorization endpoint (no discovery, no ID token: "
        "the user comes from the userinfo endpoint); with the token and userinfo URLs and the "
        "client id, they make 'oidc' the default authenticator.",
    )
    oauth_token_url: str | None = Field(
        default=None,
        description="The provider's token endpoint, where the CLI trades the code for an access "
        "token.",
    )
    oauth_userinfo_url: str | None = Field(
        default=None,
        description="The provider's userinfo endpoint, which the server asks who an access "
        "token belongs to.",
    )
    oauth_client_id: str | None = Field(
        default=None,
        description="nbplane's client id at the provider: a public client (no secret) allowed "
        "to redirect to http://127.0.0.1 on any port, path /callback.",
    )
    oauth_scopes: str = Field(
        default="openid profile",
        description="Scopes a login asks for, space-separated (oidc adds 'openid' and "
        "'offline_access' is up to you).",
    )
    oauth_username_claim: str = Field(
        default="preferred_username",
        description="Userinfo claim naming the nbplane user (falling back to 'sub'); the user is "
        "created, not an admin, on first login.",
    )
    oauth_groups_claim: str = Field(
        default="groups",
        description="Userinfo claim listing the user's teams; when present it replaces their "
        "memberships at each login (names that are not valid team names are skipped).",
    )

    sandbox: str = Field(
        default="auto",
        description="How the local job executor and local session launcher isolate the code "
        "they start (job steps, kernels, terminals): 'bubblewrap' (a read-only view of the "
        "machine without nbplane's home, database file or the server user's home, its own "
        "writable directories only, new PID/IPC/UTS namespaces, no capabilities, run as "
        "NBPLANE_SANDBOX_UID; needs root and the bwrap command), 'none' (as the server's own "
        "user: one team of trusted users only, see `nbplane serve --single-tenant`), or 'auto' "
        "(bubblewrap when it works here, else none).",
    )
    sandbox_uid: int = Field(
        default=65534,
        ge=1,
        description="bubblewrap: the unprivileged user and group id sandboxed processes run as "
        "(default: nobody), so they cannot read root's files that a read-only view still shows.",
    )

    session_launcher: str = Field(
        default="local",
        description="Where sessions' Jupyter servers run: 'local' (a process each, on "
        "loopback) or 'kubernetes' (a StatefulSet and Service each).",
    )
    public_url: str | None = Field(
        default=None,
        description="The URL users reach nbplane at (behind an Ingress, its https address): a "
        "session's `url` is {public URL}/sessions/{id}/ (default: the address the server "
        "listens on).",
    )
    session_public_url: str | None = Field(
        default=None,
        description="The nbplane server's URL as sessions reach it (inside the cluster); "
        "sessions get it as NBPLANE_URL (default: the address the server listens on).",
    )
    pool_min: int = Field(
        default=1,
        ge=0,
        description="Notebook APIs: shells (or kernels) an engine keeps ready when idle: forked "
        "ahead for `isolated`, warm per notebook for `reuse`.",
    )
    pool_max: int | None = Field(
        default=None,
        ge=1,
        description="Notebook APIs: most shells (or kernels) an engine keeps forked ahead "
        "(`isolated`) or warm per notebook (`reuse`, which grows to it when all are busy); "
        "default: the worker's --pool-size (4).",
    )
    pool_idle_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Notebook APIs: a shell (or kernel) idle this long ends, down to "
        "NBPLANE_POOL_MIN.",
    )
    session_pool_size: int = Field(
        default=2,
        ge=0,
        description="Local launcher: Jupyter servers started ahead of time and handed out on "
        "create, so a session is ready in about a second; 0 starts each on demand.",
    )
    session_command: str = Field(
        default="jupyter-lab",
        description="The Jupyter server a session runs: 'jupyter-lab' or 'jupyter-server' "
        "(local launcher: found beside nbplane's Python, else on PATH, or a path to it; "
        "Kubernetes: in the image).",
    )
    session_resource_classes: Path | None = Field(
        default=None,
        description="JSON file listing the resource classes users may choose (name, cpu, "
        "memory, description, default, teams); default: small (1 CPU, 2Gi) and large (2 CPU, "
        "8Gi).",
    )
    session_idle_hibernate_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="A running session whose server saw no activity for this long is "
        "hibernated; 0 never.",
    )
    session_hibernated_delete_seconds: float = Field(
        default=7 * 86400.0,
        ge=0,
        description="A hibernated session untouched for this long is deleted (its workspace "
        "kept); 0 never.",
    )
    session_start_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="A session not ready this long after create or resume fails with its logs.",
    )
    session_max_per_user: int = Field(
        default=3,
        ge=0,
        description="Sessions (starting or running) a user may have at once; one more is "
        "refused (429) naming the sessions to stop. An admin sets a user's own limit with "
        "`nbplane user limit NAME --max-sessions N`.",
    )
    session_anonymous: bool = Field(
        default=False,
        description="Allow sessions without a token (anonymous), limited and short-lived.",
    )
    session_anonymous_max: int = Field(
        default=5, ge=0, description="Anonymous sessions allowed at once, server-wide."
    )
    session_anonymous_lifetime_seconds: float = Field(
        default=1800.0, gt=0, description="An anonymous session is deleted this long after create."
    )
    kubernetes_session_image: str = Field(
        default=SESSION_IMAGE,
        description="Kubernetes launcher: the image a session runs when the user names none "
        "(default: the session image of this version, deploy/images/session).",
    )
    kubernetes_session_storage: str = Field(
        default="1Gi", description="Kubernetes launcher: size of each session's workspace volume."
    )
    kubernetes_session_storage_class: str | None = Field(
        default=None,
        description="Kubernetes launcher: storage class of workspace volumes (default: the "
        "cluster's).",
    )
    kubernetes_session_workspace: str = Field(
        default="/home/jovyan",
        pattern=r"^/",
        description="Kubernetes launcher: where the workspace volume is mounted in the session's "
        "container; it is the server's root directory and HOME, so files and settings survive "
        "hibernation.",
    )
    kubernetes_session_ports: str = Field(
        default="8888",
        pattern=r"^\d{1,5}(-\d{1,5})?$",
        description="Kubernetes launcher: the port sessions' servers listen on, or a range "
        "LOW-HIGH from which each session gets its own. Pods have their own IP, so one port "
        "does; a range is for clusters whose pods share the node's network (hostNetwork, the "
        "loopback test cluster), where two sessions on one node would collide.",
    )
    kubernetes_session_url_template: str = Field(
        default="http://{service}.{namespace}.svc:{port}/",
        description="Kubernetes launcher: where nbplane reaches a session's server (users reach "
        "it through nbplane, at /sessions/{id}/); placeholders {service}, {namespace}, {port}, "
        "{session}. Scheme, host and port only: the server's base URL is always "
        "/sessions/{id}/, the path nbplane forwards.",
    )
    kubernetes_session_trusted_images: str = Field(
        default="",
        description="Kubernetes launcher: comma-separated patterns (fnmatch) of images used "
        "without asking their registry whether they exist, e.g. 'registry.internal/*' for a "
        "private registry; '*' turns the check off. Other images are looked up anonymously "
        "(Docker Registry API v2) when a session is created; the default image is trusted.",
    )

    @property
    def resolved_authenticator(self) -> str:
        """NBPLANE_AUTHENTICATOR, or 'oidc' when only earlier versions' OAuth2 settings say so."""
        if "authenticator" not in self.model_fields_set and self.oauth_authorize_url:
            return "oidc"
        return self.authenticator

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.home / 'nbplane.db'}"

    @property
    def default_db_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'warehouse.sqlite'}"


@cache
def get_settings() -> Settings:
    """The settings, or a ConfigError naming each variable that cannot be used (never its
    value: it may be a secret)."""
    try:
        return Settings()
    except ValidationError as error:
        problems = [
            (f"NBPLANE_{str(problem['loc'][0]).upper()}" if problem["loc"] else "NBPLANE_*")
            + f": {problem['msg']}"
            for problem in error.errors()
        ]
        first = error.errors()[0]["loc"]
        raise ConfigError("; ".join(problems), field=str(first[0]) if first else None) from None
