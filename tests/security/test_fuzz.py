"""Schemathesis over every operation of the app's own OpenAPI document, in-process (ASGI).

A normal team member, then an admin, calls every operation with generated input (schema
examples, boundary values of every field, then random valid and invalid values), half of the
path parameters aimed at objects that exist (the member's team, job, version, executions,
session, a notebook API, a connection, a user), job archive uploads with real and damaged zips.
Every answer must be a documented status with a body matching its schema, and never a 5xx;
invalid input is refused, nothing answers without the token, a deleted thing stays gone.

On SQLite, and on PostgreSQL when NBPLANE_TEST_POSTGRES_URL is set (it refuses what SQLite
keeps: NUL in text, values longer than their column). Nothing runs: no notebook worker, no
control plane; sessions run a command that fails at once (``false``). So the whole module stays
in-process and within its time budget. Schemathesis is driven through its engine (what its CLI
runs; its pytest plugin does not work with pytest 9), with a fixed seed and bounded examples."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.python import asgi

from tests.conftest import BACKENDS, database_url, in_process_store
from tests.integration.api_notebooks import NUMBER_IN, write_api
from tests.integration.job_archives import BAD_RETENTION, RUNNABLE, broken_crc

schemathesis.serializer.alias("application/zip", "application/octet-stream")

SEED = 20261206
EXAMPLES = 25
"""Examples per operation in each phase: each field's boundaries and bad types, and more."""
TEAM, JOB, CONNECTION = "analytics", "daily", "warehouse"
PINNED = {"wait": 0, "follow": False, "force": False}
"""Nothing runs here, so waiting for an execution to end, following its log or deleting a job
after cancelling its executions would only sleep until a limit; for the same reason a
session's event stream is read up to its first event."""
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "ignored_auth",
    "use_after_free",
    "ensure_resource_availability",
    "unsupported_method",
)
"""No 5xx; a documented status, content type and body; invalid input refused; no answer
without the token; a deleted thing stays gone. (Not positive_data_acceptance: names and cron
expressions have rules a JSON Schema does not spell, so schema-valid input may be a 422.)"""


@dataclass
class World:
    """The app under test, a token per role, and what the fuzzer aims at."""

    app: Any
    tokens: dict[str, str]
    known: dict[str, list[str]]


@dataclass
class Report:
    operations: set[str] = field(default_factory=set)
    requests: int = 0
    server_errors: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module", params=BACKENDS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    from nbplane.deployments.lifecycle import JobExecutionLifecycle
    from nbplane.deployments.models import JobExecutionStatus
    from nbplane.server.app import ServerConfig, create_app
    from nbplane.settings import get_settings

    root = tmp_path_factory.mktemp("fuzz")
    home, notebooks = root / "home", root / "notebooks"
    home.mkdir()
    notebooks.mkdir()
    write_api(
        notebooks,
        "double",
        [("x = 1", ["parameters"]), "y = 2 * x"],
        {"input": NUMBER_IN, "output": {"type": "object", "properties": {"y": {"type": "number"}}}},
    )
    with database_url(request.param, root) as url, pytest.MonkeyPatch.context() as patch:
        store_url, store, tokens = in_process_store(patch, url, home, TEAM)
        # FastAPI is an ASGI app: schemathesis types the scope and messages as dict, Starlette
        # as MutableMapping.
        app = cast(
            asgi.ASGIApp,
            create_app(
                ServerConfig(
                    notebooks_dir=notebooks,
                    store_url=store_url,
                    cache_dir=home / "cache",
                    run_worker=False,
                    run_control=False,
                )
            ),
        )
        try:
            with asgi.get_client(app) as client:
                known = prepare(client, tokens)
            finished = known["execution_id"][0]
            store.deployments.append_log(finished, "a log line\n")
            JobExecutionLifecycle(store.deployments).finish(
                finished, JobExecutionStatus.FAILED, "ended by the setup"
            )
            yield World(app, tokens, known)
            # the admin's fuzzing may have demoted or deleted its own user: a new admin cleans up
            store.auth.create_user("fuzz-cleanup", admin=True)
            cleanup = store.auth.create_token("fuzz-cleanup", "fuzz-cleanup")[1]
            with asgi.get_client(app) as client:
                admin = {"Authorization": f"Bearer {cleanup}"}
                for session in client.get("/api/v1/sessions?all=true", headers=admin).json():
                    client.delete(f"/api/v1/sessions/{session['id']}", headers=admin)
        finally:
            asgi.shutdown_lifespans()
            store.close()
            get_settings.cache_clear()


def prepare(client: Any, tokens: dict[str, str]) -> dict[str, list[str]]:
    """A job with a version, a deployment and two executions (one stays queued, so the job
    cannot be deleted without force), a session, a notebook execution and a connection: real
    names and ids for the fuzzer's path parameters."""
    member = {"Authorization": f"Bearer {tokens['member']}"}
    base = f"/api/v1/teams/{TEAM}/jobs"
    assert client.post(base, json={"name": JOB}, headers=member).status_code == 201
    version = client.post(
        f"{base}/{JOB}/versions",
        data=RUNNABLE,
        headers={**member, "Content-Type": "application/zip"},
    )
    deployed = client.put(
        f"{base}/{JOB}/deployment", json={"schedule": "0 6 * * *"}, headers=member
    )
    executions = [
        client.post(f"{base}/{JOB}/executions", json={}, headers=member) for _ in range(2)
    ]
    session = client.post("/api/v1/sessions", json={}, headers=member)
    submitted = client.post(
        "/api/v1/notebooks/double/executions", json={"parameters": {"x": 2}}, headers=member
    )
    connection = client.post(
        "/api/v1/connections",
        json={"name": CONNECTION, "kind": "database", "values": {"url": "sqlite://"}},
        headers={"Authorization": f"Bearer {tokens['admin']}"},
    )
    for answer in (version, deployed, *executions, session, submitted, connection):
        assert answer.status_code in (200, 201), answer.text
    return {
        "team": [TEAM],
        "job": [JOB],
        "version": [version.json()["id"]],
        "execution_id": [executions[0].json()["id"], submitted.json()["id"]],
        "session_id": [session.json()["id"]],
        "name": ["double", CONNECTION],
        "user": ["alice"],
    }


def fuzz(world: World, role: str) -> Report:
    from schemathesis.config import SchemathesisConfig
    from schemathesis.engine import events, from_schema

    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {world.tokens[role]}"},
            "generation": {"max-examples": EXAMPLES, "database": "none"},
            "parameters": PINNED,
            "request-timeout": 20,
            "max-stream-events": 1,
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "phases": {"stateful": {"enabled": False}},
            "suppress-health-check": ["all"],
        }
    )
    loaded = schemathesis.openapi.from_asgi("/openapi.json", world.app, config=config)

    @loaded.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
        """Half the time, aim at objects that exist, so the fuzzer gets past "not found"."""
        aimed = {
            key: st.sampled_from(world.known[key])
            for key in path_parameters or {}
            if key in world.known
        }
        if not aimed:
            return st.just(path_parameters)
        return st.one_of(
            st.just(path_parameters),
            st.fixed_dictionaries(aimed).map(lambda found: {**(path_parameters or {}), **found}),
        )

    @loaded.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        """Job archive uploads get real zips, whole, with a broken CRC and with a bad
        config.ini, besides noise."""
        if context.operation is not None and context.operation.path.endswith("/versions"):
            samples = [RUNNABLE, broken_crc(RUNNABLE), BAD_RETENTION]
            return st.one_of(st.just(body), st.sampled_from(samples))
        return st.just(body)

    report = Report()
    for event in from_schema(loaded).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            recorded(report, event.recorder)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            report.errors.append(f"{getattr(event, 'label', '')}: {event.info.format()}")
    return report


def recorded(report: Report, recorder: Any) -> None:
    report.operations.add(recorder.label)
    for interaction in recorder.interactions.values():
        report.requests += 1
        if interaction.response is not None:
            report.statuses[interaction.response.status_code] += 1
            report.server_errors += interaction.response.status_code >= 500
    for checks in recorder.checks.values():
        for check in checks:
            if check.failure_info is not None:
                failure = check.failure_info.failure
                report.failures.append(
                    f"{recorder.label}: {check.name}: {failure.title} "
                    f"{failure.message} <- {check.failure_info.code_sample}"
                )


def check(world: World, report: Report, role: str) -> None:
    print(
        json.dumps(
            {
                "role": role,
                "operations": len(report.operations),
                "requests": report.requests,
                "5xx": report.server_errors,
                "schema violations": len(report.failures),
                "statuses": dict(sorted(report.statuses.items())),
            }
        )
    )
    assert not report.failures and not report.errors, "\n".join(report.failures + report.errors)
    assert report.server_errors == 0
    document = world.app.openapi()["paths"]
    assert report.operations == {
        f"{method.upper()} {path}" for path, operations in document.items() for method in operations
    }, "every operation was fuzzed"


def test_every_operation_as_team_member(world: World) -> None:
    check(world, fuzz(world, "member"), "member")


def test_every_operation_as_admin(world: World) -> None:
    check(world, fuzz(world, "admin"), "admin")
