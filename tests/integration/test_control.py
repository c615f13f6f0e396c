"""The control plane over HTTP on a real server: jobs, versions, deployments, schedules,
executions with the local executor, logs, properties and secrets, access between teams."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_notebook
from tests.integration.server_fixture import Server, free_port, nbplane, running_server, stop

TEAM = "sales"
JOB = f"/api/v1/teams/{TEAM}/jobs/daily"


@pytest.fixture
def server(tmp_path: Path, store_url: str) -> Iterator[Server]:
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    with running_server(notebooks, tmp_path / "home", store_url) as running:
        yield running


def job_archive(tmp_path: Path, *cells: Any, name: str = "job") -> bytes:
    """The zip `nbplane job export` makes of a job with these step cells."""
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    write_notebook(directory / "10_main.ipynb", list(cells))
    target = tmp_path / f"{name}.zip"
    from nbplane.jobs.scaffold import export_job

    export_job(directory, target)
    return target.read_bytes()


def deploy(
    server: Server, archive: bytes, team: str = TEAM, job: str = "daily", **deployment: Any
) -> dict[str, Any]:
    client = server.client
    created = client.post(f"/api/v1/teams/{team}/jobs", json={"name": job})
    assert created.status_code in (201, 409), created.text
    path = f"/api/v1/teams/{team}/jobs/{job}"
    uploaded = client.post(
        f"{path}/versions", content=archive, headers={"content-type": "application/zip"}
    )
    assert uploaded.status_code in (200, 201), uploaded.text
    deployed = client.put(f"{path}/deployment", json=deployment)
    assert deployed.status_code == 200, deployed.text
    return dict(deployed.json())


def execute(server: Server, wait: float = 0, *, job: str = JOB, **body: Any) -> dict[str, Any]:
    started = server.client.post(f"{job}/executions", json=body)
    assert started.status_code == 201, started.text
    if not wait:
        return dict(started.json())
    return wait_for(server, started.json()["id"], wait, job=job)


def wait_for(
    server: Server, execution_id: str, seconds: float = 60, *, job: str = JOB
) -> dict[str, Any]:
    found = server.client.get(f"{job}/executions/{execution_id}", params={"wait": seconds})
    assert found.status_code == 200, found.text
    return dict(found.json())


def completed_execution(server: Server, archive: bytes, team: str, job: str) -> dict[str, Any]:
    """Deploy the archive as the team's job and execute it once, to completion."""
    deploy(server, archive, team, job)
    done = execute(server, wait=60, job=f"/api/v1/teams/{team}/jobs/{job}")
    assert done["status"] == "completed", done
    return done


def wait_running(server: Server, execution_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = server.client.get(f"{JOB}/executions/{execution_id}").json()
        if record["status"] == "running" and "started" in log(server, execution_id):
            return
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} never ran: {record}")


def log(server: Server, execution_id: str) -> str:
    return server.client.get(f"{JOB}/executions/{execution_id}/logs").text


def wait_scheduled(server: Server, count: int, seconds: float = 30) -> None:
    """Until the schedule has started ``count`` executions (rather than a fixed sleep)."""
    deadline = time.monotonic() + seconds
    items: list[Any] = []
    while time.monotonic() < deadline:
        items = server.client.get(f"{JOB}/executions", params={"limit": 100}).json()["items"]
        if len(items) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{len(items)} scheduled executions in {seconds} s, wanted {count}")


def test_deploy_execute_read_steps_and_logs(server: Server, tmp_path: Path) -> None:
    archive = job_archive(
        tmp_path,
        "print('first step says hi')",
        "n = len(job_input.get_arguments())\nprint(f'{n} arguments')",
    )
    deployment = deploy(server, archive, arguments={"day": "2024-01-01"})
    assert deployment["executor"] == "local" and deployment["next_run_at"] is None
    record = execute(server, wait=60)
    assert record["status"] == "completed", record
    assert record["started_by"].startswith("user:")
    assert [step["status"] for step in record["steps"]] == ["succeeded", "succeeded"]
    text = log(server, record["id"])
    assert "first step says hi" in text and "1 arguments" in text
    assert server.environment["NBPLANE_HOME"] not in text, "a job's log tells no server path"
    assert not set("│┃━┏┡") & set(text), "a log is plain text: no box drawing"
    other = execute(server, wait=60, arguments={})
    assert "0 arguments" in log(server, other["id"])
    # each execution runs in a scratch directory, yet its runs are numbered per deployed job
    assert " · run 1 · " in text and " · run 2 · " in log(server, other["id"])
    listed = server.client.get(f"{JOB}/executions", params={"limit": 1}).json()
    assert listed["total"] == 2 and listed["items"][0]["id"] == other["id"]
    job = server.client.get(JOB).json()
    assert job["deployment"]["version"] == deployment["version"]
    assert [e["id"] for e in job["last_executions"]] == [other["id"], record["id"]]
    back = server.client.get(f"{JOB}/versions/{deployment['version'][:10]}/archive")
    assert back.status_code == 200 and back.content == archive
    from nbplane.jobs.scaffold import export_job

    export_job(tmp_path / "job", tmp_path / "again.zip")
    again = (tmp_path / "again.zip").read_bytes()
    assert again == archive, "an unchanged job exports to the same bytes"
    same = server.client.post(
        f"{JOB}/versions", content=again, headers={"content-type": "application/zip"}
    )
    assert same.status_code == 200 and same.json()["id"] == deployment["version"]


def test_failed_step_names_the_cell(server: Server, tmp_path: Path) -> None:
    deploy(server, job_archive(tmp_path, "x = 1", "raise ValueError('bad day')"))
    record = execute(server, wait=60)
    assert record["status"] == "failed"
    assert "bad day" in record["reason"] and "10_main.ipynb" in record["reason"]
    assert [step["status"] for step in record["steps"]] == ["succeeded", "failed"]


def test_process_dying_mid_step_ends_failed_with_its_exit_code(
    server: Server, tmp_path: Path
) -> None:
    deploy(server, job_archive(tmp_path, "import os\nos._exit(7)"))
    record = execute(server, wait=60)
    assert record["status"] == "failed"
    assert "exit code 7" in record["reason"]


def test_a_process_lost_on_its_first_attempt_is_retried(server: Server, tmp_path: Path) -> None:
    """The first attempt's process dies without a result (a platform failure): the retry, a
    new process in the same work directory, completes; both attempts are on the record."""
    deploy(
        server,
        job_archive(
            tmp_path,
            "import os, pathlib\n"
            "marker = pathlib.Path(os.environ['NBPLANE_WORK_DIR']) / 'tried'\n"
            "if not marker.exists():\n    marker.touch()\n    os._exit(7)\n"
            "print('the second attempt ran')",
        ),
        retries=2,
        retry_delay=0.1,
        retry_on="platform",
    )
    record = execute(server, wait=60)
    assert record["status"] == "completed", record
    assert [(a["number"], a["status"], a["failure"]) for a in record["attempts"]] == [
        (1, "failed", "platform"),
        (2, "completed", None),
    ]
    assert "exit code 7" in record["attempts"][0]["reason"]
    assert record["reason"].endswith("(2 of 3 attempts ran)")
    text = log(server, record["id"])
    first, second = text.split("=== nbplane: attempt 2 of 3 ===")
    assert first.startswith("=== nbplane: attempt 1 of 3 ===") and "retrying: attempt 1" in first
    assert "the second attempt ran" in second


def test_cancel_stops_the_process(server: Server, tmp_path: Path) -> None:
    deploy(
        server,
        job_archive(  # its work directory: the one place a sandboxed job may write
            tmp_path,
            "import os, time, pathlib\n"
            "marker = pathlib.Path(os.environ['NBPLANE_WORK_DIR'], 'still-running')\n"
            "marker.touch()\nprint('started', flush=True)\n"
            "for _ in range(600):\n    marker.touch()\n    time.sleep(0.1)",
        ),
    )
    record = execute(server)
    marker = tmp_path / "home" / "executions" / record["id"] / "work" / "still-running"
    wait_running(server, record["id"])
    assert marker.exists(), "the job's process runs"
    cancelled = server.client.post(f"{JOB}/executions/{record['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    marker.unlink(missing_ok=True)
    time.sleep(0.5)
    assert not marker.exists(), "the job's process was stopped"
    again = server.client.post(f"{JOB}/executions/{record['id']}/cancel")
    assert again.status_code == 409


def test_timeout_ends_the_execution(server: Server, tmp_path: Path) -> None:
    deploy(server, job_archive(tmp_path, "import time\ntime.sleep(60)"), timeout=1.5)
    record = execute(server, wait=30)
    assert record["status"] == "timed_out" and "1.5" in record["reason"]
    page = server.client.get(f"{JOB}/executions/{record['id']}/html")
    assert page.status_code == 200, "ended in its first step: a page of why it ended"
    body = page.text[page.text.index("<main>") :]
    block = body[: body.index("</div>")]
    assert block.startswith('<main><div class="nbplane-failure"'), "the page opens with it"
    assert "<strong>Timed out</strong>" in block and "1.5" in block


def test_follow_streams_the_log_until_the_end(server: Server, tmp_path: Path) -> None:
    deploy(
        server,
        job_archive(
            tmp_path,
            "import time\nfor i in range(3):\n    print(f'tick {i}', flush=True)\n"
            "    time.sleep(0.3)",
        ),
    )
    record = execute(server)
    with server.client.stream(
        "GET", f"{JOB}/executions/{record['id']}/logs", params={"follow": "true"}
    ) as response:
        text = "".join(response.iter_text())
    assert all(f"tick {i}" in text for i in range(3)) and "completed" in text
    assert wait_for(server, record["id"], 0)["status"] == "completed"
    rest = server.client.get(f"{JOB}/executions/{record['id']}/logs", params={"offset": 5})
    assert rest.text == text[5:] and int(rest.headers["x-log-offset"]) == len(text)


def test_schedule_runs_each_due_time_once(server: Server, tmp_path: Path) -> None:
    deployment = deploy(
        server,
        job_archive(tmp_path, "print('scheduled')"),
        schedule="*/2 * * * * *",
        timezone="Europe/Sofia",
    )
    assert deployment["next_run_at"] is not None
    wait_scheduled(server, 2)
    server.client.patch(f"{JOB}/deployment", json={"enabled": False})
    time.sleep(1.5)
    items = server.client.get(f"{JOB}/executions").json()["items"]
    due = [item["scheduled_for"] for item in items]
    assert 2 <= len(due) <= 4 and len(set(due)) == len(due), due
    assert all(item["started_by"] == "schedule" for item in items)
    disabled = server.client.get(JOB).json()["deployment"]
    assert disabled["enabled"] is False and disabled["next_run_at"] is None


def test_two_replicas_start_each_due_time_once(tmp_path: Path, store_url: str) -> None:
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    with (
        running_server(notebooks, tmp_path / "home", store_url) as first,
        running_server(notebooks, tmp_path / "home", store_url) as second,
    ):
        deploy(first, job_archive(tmp_path, "print('tick')"), schedule="*/2 * * * * *")
        wait_scheduled(second, 3)
        second.client.patch(f"{JOB}/deployment", json={"enabled": False})
        time.sleep(1)
        items = second.client.get(f"{JOB}/executions", params={"limit": 100}).json()["items"]
    due = [item["scheduled_for"] for item in items]
    assert len(due) >= 3 and len(set(due)) == len(due), f"a due time ran twice: {due}"


def test_properties_and_secrets_reach_the_job(server: Server, tmp_path: Path) -> None:
    deploy(
        server,
        job_archive(
            tmp_path,
            "print('target', job_input.get_property('target'))\n"
            "print('secret length', len(job_input.get_secret('password')))\n"
            "print(job_input.get_secret('password'))",
        ),
    )
    props = server.client.patch(f"{JOB}/properties", json={"values": {"target": "eu", "x": 1}})
    assert props.json() == {"target": "eu", "x": 1}
    props = server.client.patch(f"{JOB}/properties", json={"values": {"x": None}})
    assert props.json() == {"target": "eu"}
    secrets = server.client.patch(f"{JOB}/secrets", json={"values": {"password": "hunter22"}})
    assert secrets.json() == {"names": ["password"]}
    assert "hunter22" not in server.client.get(f"{JOB}/secrets").text
    record = execute(server, wait=60)
    assert record["status"] == "completed", record
    text = log(server, record["id"])
    assert "target eu" in text and "secret length 8" in text
    assert "hunter22" not in text, "secret values are redacted from logs"


def test_bad_input_gets_clear_errors(server: Server, tmp_path: Path) -> None:
    client = server.client
    assert client.post(f"/api/v1/teams/{TEAM}/jobs", json={"name": "Bad Name"}).status_code == 422
    assert client.post(f"/api/v1/teams/{TEAM}/jobs", json={"name": "daily"}).status_code == 201
    duplicate = client.post(f"/api/v1/teams/{TEAM}/jobs", json={"name": "daily"})
    assert duplicate.status_code == 409 and "already" in duplicate.json()["message"]

    def upload(content: bytes) -> httpx.Response:
        return client.post(
            f"{JOB}/versions", content=content, headers={"content-type": "application/zip"}
        )

    not_zip = upload(b"hello")
    assert not_zip.status_code == 422 and "not a zip" in not_zip.json()["message"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("README.md", "no steps here")
    no_job = upload(buffer.getvalue())
    assert no_job.status_code == 422 and "not a job" in no_job.json()["message"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("../../evil.py", "def run(job_input): pass")
    escape = upload(buffer.getvalue())
    assert escape.status_code == 422 and "outside" in escape.json()["message"]
    assert client.post(f"{JOB}/executions", json={}).status_code == 409, "not deployed"
    none_yet = client.put(f"{JOB}/deployment", json={})
    assert none_yet.status_code == 404 and "no uploaded version" in none_yet.json()["message"]
    assert upload(job_archive(tmp_path, "x = 1")).status_code == 201
    bad_cron = client.put(f"{JOB}/deployment", json={"schedule": "every day"})
    assert bad_cron.status_code == 422 and bad_cron.json()["field"] == "schedule"
    bad_zone = client.put(
        f"{JOB}/deployment", json={"schedule": "0 3 * * *", "timezone": "Mars/Olympus"}
    )
    assert bad_zone.status_code == 422 and bad_zone.json()["field"] == "timezone"
    unknown = client.put(f"{JOB}/deployment", json={"version": "ffff"})
    assert unknown.status_code == 404 and unknown.json()["field"] == "version"
    extra = client.put(f"{JOB}/deployment", json={"shedule": "0 3 * * *"})
    assert extra.status_code == 422
    for field, value in (("retries", 11), ("retry_delay", 0), ("retry_on", "sometimes")):
        refused = client.put(f"{JOB}/deployment", json={field: value})
        assert refused.status_code == 422 and refused.json()["field"] == f"body.{field}"
    assert client.put(f"{JOB}/deployment", json={}).status_code == 200
    null = client.patch(f"{JOB}/deployment", json={"retries": None})
    assert null.status_code == 422 and null.json()["field"] == "body.retries", null.text
    assert client.get(f"{JOB}/executions/nope").status_code == 404
    assert client.get(f"/api/v1/teams/{TEAM}/jobs/nope").status_code == 404


def test_deleting_a_job_with_a_running_execution(server: Server, tmp_path: Path) -> None:
    deploy(
        server, job_archive(tmp_path, "import time\nprint('started', flush=True)\ntime.sleep(60)")
    )
    record = execute(server)
    wait_running(server, record["id"])
    refused = server.client.delete(JOB)
    assert refused.status_code == 409 and "force" in refused.json()["message"]
    state = server.client.get(f"{JOB}/executions/{record['id']}").json()
    assert state["status"] == "running"
    assert server.client.delete(JOB, params={"force": "true"}).status_code == 204
    assert server.client.get(JOB).status_code == 404
    assert server.client.get(f"/api/v1/teams/{TEAM}/jobs").json() == []


def test_teams_see_only_their_jobs(server: Server, tmp_path: Path) -> None:
    env = server.environment
    for user, team in (("alice", "sales"), ("bob", "ops")):
        nbplane("user", "create", user, "--team", team, environment=env)
    tokens = {
        user: nbplane(
            "token", "create", f"{user}-token", "--user", user, environment=env
        ).stdout.strip()
        for user in ("alice", "bob")
    }

    def as_user(user: str) -> httpx.Client:
        return httpx.Client(
            base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {tokens[user]}"}
        )

    with as_user("alice") as alice, as_user("bob") as bob:
        assert alice.get("/api/v1/me").json()["teams"] == ["sales"]
        assert alice.post("/api/v1/teams/sales/jobs", json={"name": "daily"}).status_code == 201
        assert bob.post("/api/v1/teams/ops/jobs", json={"name": "nightly"}).status_code == 201
        archive = job_archive(tmp_path, "x = 1")
        matrix = {
            ("GET", ""): None,
            ("DELETE", ""): None,
            ("GET", "/versions"): None,
            ("POST", "/versions"): archive,
            ("PUT", "/deployment"): {},
            ("POST", "/executions"): {},
            ("GET", "/executions"): None,
            ("GET", "/properties"): None,
            ("PATCH", "/secrets"): {"values": {"a": "b"}},
        }
        for (method, suffix), body in matrix.items():
            kwargs: dict[str, Any] = (
                {"content": body}
                if isinstance(body, bytes)
                else {"json": body}
                if body is not None
                else {}
            )
            theirs = bob.request(method, f"/api/v1/teams/sales/jobs/daily{suffix}", **kwargs)
            assert theirs.status_code == 404, (method, suffix, theirs.status_code)
            assert "forbidden" not in theirs.text.lower()
        assert bob.get("/api/v1/teams/sales/jobs").status_code == 404
        assert [j["name"] for j in alice.get("/api/v1/teams/sales/jobs").json()] == ["daily"]
        assert [j["name"] for j in server.client.get("/api/v1/teams/ops/jobs").json()] == [
            "nightly"
        ], "an admin sees every team"
        nbplane("user", "join", "bob", "sales", environment=env)
        deadline = time.monotonic() + 15  # the server's token cache forgets bob's old teams
        while (joined := bob.get("/api/v1/teams/sales/jobs/daily")).status_code != 200:
            assert time.monotonic() < deadline, joined.text
            time.sleep(0.2)


def test_execution_outlives_a_server_restart(tmp_path: Path, store_url: str) -> None:
    """The job's process keeps running while the server restarts at its address, and records
    its result through it."""
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    port = free_port()
    with running_server(notebooks, tmp_path / "home", store_url, port=port) as server:
        deploy(
            server,
            job_archive(
                tmp_path, "import time\nprint('started', flush=True)\ntime.sleep(2)\nprint('done')"
            ),
        )
        record = execute(server)
        wait_running(server, record["id"])
        stop(server.process)
    with running_server(notebooks, tmp_path / "home", store_url, port=port) as server:
        final = wait_for(server, record["id"], 30)
        assert final["status"] == "completed", final
        assert "done" in log(server, record["id"])
