"""Schemathesis over every operation of the app's own OpenAPI document, in-process (ASGI).

A normal team member (and, in a second pass, an admin) calls every operation with generated
input: valid, boundary and invalid values, half of them aimed at objects that exist (the
member's team, job, version, execution, session, connection). Every answer must be a documented
status with a body that matches its schema, and never a 5xx. Sessions run a command that fails
at once (``false``), job executions and notebook executions are queued and never run, so the
whole module stays in-process and within its time budget."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.python import asgi

from tests.integration.api_notebooks import NUMBER_IN, write_api

schemathesis.serializer.alias("application/zip", "application/octet-stream")

SEED = 20261206
EXAMPLES = 12
"""Examples per operation and phase: enough to hit each field's boundaries and bad types."""
TEAM, JOB, CONNECTION = "analytics", "daily", "warehouse"


@dataclass
class World:
    """The app under test, its tokens and the objects the fuzzer aims at."""

    app: Any
    tokens: dict[str, str]
    known: dict[str, list[str]]
    archives: list[bytes]
    stats: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)


def job_archive(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, text in files.items():
            bundle.writestr(name, text)
    return buffer.getvalue()


def broken_crc(archive: bytes) -> bytes:
    """The archive with one byte of its first member's data flipped: its CRC no longer holds."""
    data = bytearray(archive)
    header = data.index(b"PK\x03\x04")
    name_length = int.from_bytes(data[header + 26 : header + 28], "little")
    extra_length = int.from_bytes(data[header + 28 : header + 30], "little")
    start = header + 30 + name_length + extra_length
    data[start + 1] ^= 0x55
    return bytes(data)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from nbplane.executions.models import ExecutionStatus
    from nbplane.server.app import ServerConfig, create_app
    from nbplane.settings import get_settings
    from nbplane.store import open_store

    root = tmp_path_factory.mktemp("fuzz")
    home, notebooks = root / "home", root / "notebooks"
    notebooks.mkdir()
    write_api(notebooks, "double", [("x = 1", ["parameters"]), "y = 2 * x"],
              {"input": NUMBER_IN, "output": {"type": "object",
                                              "properties": {"y": {"type": "number"}}}})
    store_url = f"sqlite:///{home / 'nbplane.db'}"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {"NBPLANE_HOME": str(home), "NBPLANE_STORE_URL": store_url,
                           "NBPLANE_SESSION_COMMAND": "false",
                           "NBPLANE_SESSION_POOL_SIZE": "0"}.items():
            patch.setenv(key, value)
        get_settings.cache_clear()
        home.mkdir()
        store = open_store(store_url)
        store.control.create_user("alice")
        store.control.add_member("alice", TEAM)
        tokens = {"member": store.tokens.create("alice-fuzz", "alice")[1],
                  "admin": store.tokens.create("admin-fuzz")[1]}
        store.close()
        app = create_app(ServerConfig(notebooks_dir=notebooks, store_url=store_url,
                                      cache_dir=home / "cache", run_worker=False,
                                      run_control=False))
        good = job_archive({"10_load.py": "def run(job_input):\n    pass\n"})
        known = prepare(app, tokens, good)
        store = open_store(store_url)
        finished = known["execution_id"][0]
        store.control.append_log(finished, "a log line\n")
        store.control.finish_execution(finished, ExecutionStatus.FAILED, "ended by the setup")
        store.close()
        try:
            yield World(app, tokens, known, [good, broken_crc(good)])
        finally:
            asgi.shutdown_lifespans()
            get_settings.cache_clear()


def prepare(app: Any, tokens: dict[str, str], archive: bytes) -> dict[str, list[str]]:
    """A job with a version, a deployment and two executions (one stays queued, so the job
    cannot be deleted without force), a session, a notebook execution and a connection: real
    names and ids for the fuzzer's path parameters."""
    client = asgi.get_client(app)
    with client:
        member = {"Authorization": f"Bearer {tokens['member']}"}
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        base = f"/api/v1/teams/{TEAM}/jobs"
        assert client.post(base, json={"name": JOB}, headers=member).status_code == 201
        version = client.post(f"{base}/{JOB}/versions", data=archive,
                              headers={**member, "Content-Type": "application/zip"})
        assert version.status_code == 201, version.text
        deployed = client.put(f"{base}/{JOB}/deployment", json={"schedule": "0 6 * * *"},
                              headers=member)
        assert deployed.status_code == 200, deployed.text
        executions = [client.post(f"{base}/{JOB}/executions", json={}, headers=member)
                      for _ in range(2)]
        assert all(execution.status_code == 201 for execution in executions)
        session = client.post("/api/v1/sessions", json={}, headers=member)
        assert session.status_code == 201, session.text
        submitted = client.post("/api/v1/notebooks/double/executions",
                                json={"parameters": {"x": 2}}, headers=member)
        assert submitted.status_code == 201, submitted.text
        connection = client.post("/api/v1/connections", headers=admin, json={
            "name": CONNECTION, "kind": "database", "values": {"url": "sqlite://"}})
        assert connection.status_code == 201, connection.text
    return {"team": [TEAM], "job": [JOB], "version": [version.json()["id"]],
            "execution_id": [executions[0].json()["id"], submitted.json()["id"]],
            "session_id": [session.json()["id"]], "name": ["double", CONNECTION]}


PINNED = {"wait": 0, "follow": False, "force": False}
"""Nothing runs here (no worker, no control plane), so waiting for an execution to end, following
its log or deleting a job after cancelling its executions would only sleep until a limit; for
the same reason a session's event stream is read up to its first event."""
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")
"""What every answer must satisfy: no 5xx, a documented status, content type and body."""


@dataclass
class Report:
    operations: set[str] = field(default_factory=set)
    requests: int = 0
    server_errors: int = 0
    failures: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed: Counter[str] = field(default_factory=Counter)


def fuzz(world: World, role: str) -> Report:
    from schemathesis.config import SchemathesisConfig
    from schemathesis.engine import events, from_schema

    config = SchemathesisConfig.from_dict({
        "seed": SEED,
        "headers": {"Authorization": f"Bearer {world.tokens[role]}"},
        "generation": {"max-examples": EXAMPLES, "database": "none"},
        "parameters": PINNED,
        "request-timeout": 20,
        "max-stream-events": 1,
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        "phases": {"stateful": {"enabled": False}},
        "suppress-health-check": ["all"],
    })
    loaded = schemathesis.openapi.from_asgi("/openapi.json", world.app, config=config)

    @loaded.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        """Half the time, aim at objects that exist, so the fuzzer gets past "not found"."""
        aimed = {key: st.sampled_from(world.known[key])
                 for key in path_parameters or {} if key in world.known}
        if not aimed:
            return st.just(path_parameters)
        return st.one_of(
            st.just(path_parameters),
            st.fixed_dictionaries(aimed).map(lambda found: {**path_parameters, **found}))

    @loaded.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        """Job archive uploads get real zips (good, and one with a broken CRC) besides noise."""
        if context.operation is not None and context.operation.path.endswith("/versions"):
            return st.one_of(st.just(body), st.sampled_from(world.archives))
        return st.just(body)

    report = Report()
    for event in from_schema(loaded).execute():
        if isinstance(event, (events.ScenarioFinished, events.FuzzScenarioFinished)):
            recorder = event.recorder
            report.operations.add(recorder.label)
            report.elapsed[recorder.label] += event.elapsed_time
            for interaction in recorder.interactions.values():
                report.requests += 1
                if interaction.response is not None:
                    report.statuses[interaction.response.status_code] += 1
                    report.server_errors += interaction.response.status_code >= 500
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.failure_info is not None:
                        case = recorder.cases[case_id].value
                        report.failures.setdefault(recorder.label, []).append(
                            f"{check.name}: {check.failure_info.failure.title} "
                            f"{check.failure_info.failure.message[:300]} <- "
                            f"{check.failure_info.code_sample[:600]}")
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            report.errors.append(f"{getattr(event, 'label', '')}: {event.info.format()}")
    return report


def test_every_operation_as_team_member(world: World) -> None:
    report = fuzz(world, "member")
    print(json.dumps({"operations": len(report.operations), "requests": report.requests,
                      "5xx": report.server_errors, "statuses": report.statuses,
                      "violations": sum(map(len, report.failures.values()))}, default=str))
    for label, problems in report.failures.items():
        print("##", label)
        for problem in sorted(set(problems)):
            print("   ", problem.replace("\n", " | "))
    print(report.elapsed.most_common(8))
    for error in report.errors:
        print("!!", error)
    assert not report.failures and not report.errors
