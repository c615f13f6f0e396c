"""The REST API on a real server on loopback, real kernels, SQLite and PostgreSQL."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from nbplane.apis.models import DescribeExecution, ExecutionStatus
from nbplane.store import open_store
from tests.conftest import BACKENDS, database_url
from tests.integration.api_notebooks import NUMBER_IN, write_all, write_api
from tests.integration.server_fixture import Server, running_server
from tests.integration.session_helpers import user_token


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("api")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    write_all(notebooks)
    write_api(
        notebooks,
        "sales_only",
        [("x = 1", ["parameters"]), "x"],
        {"input": NUMBER_IN, "output": {}, "teams": ["sales"]},
    )
    write_api(
        notebooks,
        "shout",
        [("text = ''", ["parameters"]), "raise ValueError(text)"],
        {"input": {"type": "object", "properties": {"text": {"type": "string"}}}, "output": {}},
    )
    with database_url(request.param, root) as url:
        store = url if url.startswith("postgresql") else f"sqlite:///{root / 'nbplane.db'}"
        with running_server(notebooks, root / "home", store) as running:
            yield running


@pytest.fixture(scope="module")
def people(server: Server) -> Iterator[dict[str, httpx.Client]]:
    """alice of team sales and bob of team ops, each with their own token."""
    clients = {
        name: httpx.Client(
            base_url=server.url,
            timeout=60,
            headers={"Authorization": f"Bearer {user_token(server, name, team)}"},
        )
        for name, team in (("alice", "sales"), ("bob", "ops"))
    }
    yield clients
    for client in clients.values():
        client.close()


def submit(client: httpx.Client, notebook: str, parameters: dict[str, object]) -> dict[str, str]:
    answer = client.post(
        f"/api/v1/notebooks/{notebook}/executions",
        params={"wait": 30},
        json={"parameters": parameters},
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_health_needs_no_token_and_everything_else_does(server: Server) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    for method, path in [
        ("GET", "/api/v1/notebooks"),
        ("GET", "/api/v1/executions"),
        ("POST", "/api/v1/notebooks/double/executions"),
        ("GET", "/api/NotebookExecutions?executionId=x"),
    ]:
        response = httpx.request(method, f"{server.url}{path}", json={})
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"] == "Unauthorized"
    wrong = httpx.get(f"{server.url}/api/v1/notebooks", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_notebooks_are_listed_with_broken_ones_and_their_reason(server: Server) -> None:
    listed = {api["name"]: api for api in server.client.get("/api/v1/notebooks").json()}
    assert listed["double"]["status"] == "ok"
    assert listed["double"]["input"]["required"] == ["x"]
    assert listed["broken"]["status"] == "broken"
    assert "broken.config.json" in listed["broken"]["reason"]
    response = server.client.post("/api/v1/notebooks/broken/executions", json={})
    assert response.status_code == 409 and "broken" in response.json()["message"]


def test_execute_and_read_output_notebook_html_and_logs(server: Server) -> None:
    record = server.execute("double", {"x": 3})
    assert record["status"] == "completed", record
    assert record["output"] == {"y": 6}
    execution = record["id"]
    assert server.client.get(f"/api/v1/executions/{execution}/output").json() == {"y": 6}
    notebook = server.client.get(f"/api/v1/executions/{execution}/notebook").json()
    tags = [cell["metadata"].get("tags", []) for cell in notebook["cells"]]
    assert ["injected-parameters"] in tags, "the parameters cell is in the executed notebook"
    html = server.client.get(f"/api/v1/executions/{execution}/html")
    assert html.status_code == 200 and "save_output" in html.text
    assert "nbplane-failure" not in html.text, "a completed execution's page has no failure block"
    assert server.client.get(f"/api/v1/executions/{execution}/logs").status_code == 200


def test_jupyrest_api_keeps_working(server: Server) -> None:
    created = server.client.post(
        "/api/NotebookExecutions", json={"notebook": "double", "parameters": {"x": 5}}
    )
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["notebook"] == "double" and body["parameters"] == {"x": 5}
    for _ in range(300):
        read = server.client.get(
            "/api/NotebookExecutions", params={"executionId": body["id"], "output": "true"}
        ).json()
        if read["status"] not in ("QUEUED", "RUNNING"):
            break
        time.sleep(0.05)
    assert read["status"] == "COMPLETED" and read["output"] == {"y": 10}
    assert read["exception"] is None
    html = server.client.get(
        "/api/NotebookExecutions", params={"executionId": body["id"], "view_html": "true"}
    )
    assert html.status_code == 200 and "<html" in html.text.lower()


def test_bad_input_gets_4xx_with_the_field(server: Server) -> None:
    client = server.client
    unknown = client.post("/api/v1/notebooks/nope/executions", json={})
    assert unknown.status_code == 404 and unknown.json()["notebook"] == "nope"
    wrong_type = client.post(
        "/api/v1/notebooks/double/executions", json={"parameters": {"x": "three"}}
    )
    assert wrong_type.status_code == 422
    assert any(e["pointer"] == "/x" for e in wrong_type.json()["errors"]), wrong_type.text
    missing = client.post("/api/v1/notebooks/double/executions", json={"parameters": {}})
    assert missing.status_code == 422
    malformed = client.post(
        "/api/v1/notebooks/double/executions",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status_code == 400 and malformed.json()["error"] == "MalformedJSON"
    not_object = client.post("/api/v1/notebooks/double/executions", json=[1, 2])
    assert not_object.status_code == 422
    extra_key = client.post(
        "/api/v1/notebooks/double/executions", json={"parameters": {"x": 1}, "surprise": 1}
    )
    assert extra_key.status_code == 422
    huge = client.post(
        "/api/v1/notebooks/echo/executions", json={"parameters": {"text": "a" * 2_000_000}}
    )
    assert huge.status_code == 413
    assert client.get("/api/v1/executions/no-such-id").status_code == 404
    assert client.get("/api/v1/executions", params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/executions", params={"status": "weird"}).status_code == 422


def test_injection_through_names_and_values_is_refused_or_inert(server: Server) -> None:
    for name in ["z=0\nimport os", "__import__('os')", "a b", "class", "__x"]:
        response = server.client.post(
            "/api/v1/notebooks/echo/executions", json={"parameters": {name: 1}}
        )
        assert response.status_code == 422, (name, response.text)
    for value in [
        "'); import os; os._exit(1); ('",
        '"""\nraise SystemExit\n"""',
        "\\'\n",
        "ünïcödé ☃",
    ]:
        record = server.execute("echo", {"text": value})
        assert record["status"] == "completed", record
        assert record["output"] == {"text": value, "kind": "str"}


def failure_block(server: Server, execution_id: str) -> str:
    """The page's failure block, checked to come first in the page's body."""
    html = server.client.get(f"/api/v1/executions/{execution_id}/html").text
    body = html[html.index("<main>") :]
    assert body.startswith('<main><div class="nbplane-failure" role="alert"'), body[:300]
    return body[: body.index("</div>") + len("</div>")]


def test_failures_say_why(server: Server) -> None:
    boom = server.execute("boom", {"x": 7})
    assert boom["status"] == "failed"
    assert boom["reason"] == "exception in cell 4: ValueError: bad x 7", "cells count from 1"
    exception = server.client.get(f"/api/v1/executions/{boom['id']}/exception").json()
    assert exception["error"]["ename"] == "ValueError"
    block = failure_block(server, boom["id"])
    assert '<strong>Failed</strong> at <a href="#cell-id=' in block
    assert ">cell 4 of 4</a>" in block and "ValueError: bad x 7" in block
    bad_output = server.execute("badout", {"x": 1})
    assert bad_output["status"] == "failed" and "output schema" in bad_output["reason"]
    assert "/y" in bad_output["reason"]
    block = failure_block(server, bad_output["id"])
    assert "<strong>Output schema violated</strong>" in block
    assert "<li><code>/y: 'not a number' is not of type 'number'</code>" in block


def test_a_failing_cells_error_is_escaped_on_the_page(server: Server) -> None:
    hostile = "<script>alert('x')</script><img src=x onerror=alert(1)>"
    shout = server.execute("shout", {"text": hostile})
    assert shout["status"] == "failed", shout
    block = failure_block(server, shout["id"])
    assert ">cell 3 of 3</a>" in block
    assert "ValueError: &lt;script&gt;alert('x')&lt;/script&gt;&lt;img src=x" in block
    page = server.client.get(f"/api/v1/executions/{shout['id']}/html").text
    assert "<script>alert" not in page and "<img src=x" not in page


def test_a_dying_kernel_fails_its_execution_and_the_server_keeps_serving(server: Server) -> None:
    died = server.execute("die", {"x": 1})
    assert died["status"] == "failed", died
    assert "died" in died["reason"]
    assert server.execute("double", {"x": 2})["output"] == {"y": 4}


def test_timeout_and_cancel(server: Server) -> None:
    slow = server.execute("slow", {"seconds": 30}, wait=20)
    assert slow["status"] == "timed_out", slow
    block = failure_block(server, slow["id"])
    assert "<strong>Timed out</strong> at" in block and ">cell 3 of 3</a>" in block
    assert "did not finish within 2 s (cell 3 was running)" in block
    started = server.client.post(
        "/api/v1/notebooks/slow/executions", json={"parameters": {"seconds": 1.5}}
    ).json()
    time.sleep(0.3)
    cancelled = server.client.post(f"/api/v1/executions/{started['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = server.client.post(f"/api/v1/executions/{started['id']}/cancel")
    assert again.status_code == 409
    assert "<strong>Cancelled</strong>" in failure_block(server, started["id"])


def injected_cells(server: Server, execution_id: str) -> list[str]:
    notebook = server.client.get(f"/api/v1/executions/{execution_id}/notebook")
    assert "__nbplane_bind" not in notebook.text and "json.loads" not in notebook.text
    return [
        "".join(cell["source"])
        for cell in notebook.json()["cells"]
        if "injected-parameters" in cell["metadata"].get("tags", [])
    ]


@pytest.mark.parametrize("notebook", ["echo", "counter"], ids=["isolated", "reuse"])
def test_executed_notebooks_show_the_parameters_as_papermill_does(
    server: Server, notebook: str
) -> None:
    """One small cell of values, whatever the engine; the binding code stays out of sight."""
    hostile = '"\nimport os\n# </script>\u2028'
    parameters = {"text": hostile} if notebook == "echo" else {"x": 2, "label": hostile}
    record = server.execute(notebook, parameters)
    assert record["status"] == "completed", record
    shown = (
        f"# Parameters\ntext = {hostile!r}"
        if notebook == "echo"
        else f"# Parameters\nx = 2\nlabel = {hostile!r}"
    )
    assert injected_cells(server, record["id"]) == [shown]
    assert len(shown.splitlines()) == 1 + len(parameters)


def test_reuse_engine_starts_every_request_from_the_setup_state(server: Server) -> None:
    first = server.execute("counter", {"x": 1, "label": "given"})
    second = server.execute("counter", {"x": 2})
    assert first["status"] == second["status"] == "completed", (first, second)
    assert first["output"]["label"] == "given"
    assert second["output"]["x"] == 2
    assert second["output"]["label"] == "default", "a left-out parameter gets its default again"
    assert first["output"]["calls"] == second["output"]["calls"] == 1, "`calls += 1` is undone"
    secret = server.client.post(
        "/api/v1/notebooks/counter/executions",
        json={"parameters": {"x": 1, "alice_api_key": "s3cret"}},
    )
    assert secret.status_code == 422 and secret.json()["field"] == "parameters.alice_api_key"
    assert "s3cret" not in secret.text
    jupyrest = server.client.post(
        "/api/NotebookExecutions",
        json={"notebook": "counter", "parameters": {"x": 1, "alice_api_key": "s3cret"}},
    )
    assert jupyrest.status_code == 422 and jupyrest.json()["field"] == "parameters.alice_api_key"


def test_executions_are_seen_only_by_their_owner_and_admins(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    alice, bob = people["alice"], people["bob"]
    mine = submit(alice, "double", {"x": 3})
    theirs = submit(bob, "double", {"x": 4})
    assert (mine["created_by"], mine["team"]) == ("alice", "sales")
    assert (theirs["created_by"], theirs["team"]) == ("bob", "ops")
    path = f"/api/v1/executions/{mine['id']}"
    assert alice.get(f"{path}/html").status_code == 200  # rendered, and cached on disk
    for client, seen in ((alice, [mine]), (bob, [theirs])):
        listed = client.get("/api/v1/executions").json()
        assert [item["id"] for item in listed["items"]] == [e["id"] for e in seen]
        assert listed["total"] == 1
    assert alice.get("/api/v1/executions", params={"owner": "bob"}).json()["total"] == 0
    unknown = bob.get("/api/v1/executions/no-such-id").json()
    probes: list[tuple[str, str, dict[str, str | int]]] = [
        ("GET", path, {}),
        ("GET", path, {"wait": 1}),
        ("POST", f"{path}/cancel", {}),
        *[
            ("GET", f"{path}/{part}", {})
            for part in ("output", "exception", "notebook", "html", "logs")
        ],
        ("GET", "/api/NotebookExecutions", {"executionId": mine["id"]}),
        ("GET", "/api/NotebookExecutions", {"executionId": mine["id"], "output": "true"}),
        ("GET", "/api/NotebookExecutions", {"executionId": mine["id"], "view_html": "true"}),
    ]
    for method, url, params in probes:
        answer = bob.request(method, url, params=params)
        assert answer.status_code == 404, (url, params, answer.text)
        assert answer.json() == {**unknown, "message": f"no execution {mine['id']!r}"}
    assert alice.post(f"{path}/cancel").status_code == 409, "hers: it exists, already ended"
    assert alice.get(f"{path}/output").json() == {"y": 6}
    everyone = server.client.get("/api/v1/executions", params={"limit": 500}).json()
    assert {mine["id"], theirs["id"]} <= {item["id"] for item in everyone["items"]}
    only_alice = server.client.get("/api/v1/executions", params={"owner": "alice"}).json()
    assert [item["id"] for item in only_alice["items"]] == [mine["id"]]
    assert server.client.get(f"{path}/logs").status_code == 200, "admins read anyone's"
    with httpx.Client(base_url=server.url, timeout=60) as browser:  # the web page's list
        signed = browser.post(
            "/api/v1/auth/sign-in",
            headers={"X-Nbplane-Csrf": "1"},
            json={"token": bob.headers["Authorization"].split()[-1]},
        )
        assert signed.status_code == 200, signed.text
        page = browser.get("/api/v1/executions", params={"limit": 20}).json()
        assert [item["id"] for item in page["items"]] == [theirs["id"]]


def test_team_limited_notebook_apis_do_not_exist_for_other_teams(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    alice, bob = people["alice"], people["bob"]
    assert "sales_only" in {api["name"] for api in alice.get("/api/v1/notebooks").json()}
    assert "sales_only" in {api["name"] for api in server.client.get("/api/v1/notebooks").json()}
    names = {api["name"] for api in bob.get("/api/v1/notebooks").json()}
    assert "sales_only" not in names and "double" in names
    assert "broken" not in names, "an unreadable contract's teams are unknown: admins only"
    for answer in (
        bob.get("/api/v1/notebooks/sales_only"),
        bob.post("/api/v1/notebooks/sales_only/executions", json={"parameters": {"x": 1}}),
        bob.post(
            "/api/NotebookExecutions", json={"notebook": "sales_only", "parameters": {"x": 1}}
        ),
    ):
        assert answer.status_code == 404, answer.text
        assert answer.json()["message"] == "no notebook API named 'sales_only'"
    assert bob.get("/api/v1/notebooks/nope").json()["message"] == "no notebook API named 'nope'"
    assert alice.get("/api/v1/notebooks/sales_only").json()["input"] == NUMBER_IN
    ran = submit(alice, "sales_only", {"x": 1})
    assert ran["status"] == "completed" and ran["team"] == "sales"
    document = bob.get("/openapi.json").json()
    assert "/api/v1/notebooks/sales_only/executions" not in document["paths"]
    assert "/api/v1/notebooks/double/executions" in document["paths"]


def test_a_stored_row_never_breaks_the_listing(
    server: Server, people: dict[str, httpx.Client]
) -> None:
    """Rows written straight through the store: a lone surrogate in the parameters, NaN and a
    lone surrogate in the output, an error and a status the model does not know; with no
    owner, as rows from before owners were recorded: admins see them, nobody else."""
    store = open_store(server.environment["NBPLANE_STORE_URL"])
    try:
        odd = DescribeExecution(
            id=f"odd-{time.time_ns()}",
            notebook="echo",
            notebook_version="v",
            parameters={"text": "\ud800", "\udfff": 1},
            status=ExecutionStatus.RUNNING,
            engine="isolated",
            timeout=1,
            retries=0,
            attempts=1,
            created_at=datetime.now(UTC),
        )
        store.executions.create(odd)
        ended = {
            "status": ExecutionStatus.COMPLETED,
            "finished_at": datetime.now(UTC),
            "output": {"y": math.nan, "z": "\ud800"},
            "has_output": True,
        }
        assert store.executions.finish(odd.model_copy(update=ended), None)
        from sqlalchemy import update

        from nbplane.store.tables import executions

        with store.engine.begin() as connection:
            connection.execute(
                update(executions)
                .where(executions.c.id == odd.id)
                .values(error=["not", "an", "object"], status="weird")
            )
    finally:
        store.close()
    listed = server.client.get("/api/v1/executions", params={"limit": 500})
    assert listed.status_code == 200, listed.text
    (item,) = [item for item in listed.json()["items"] if item["id"] == odd.id]
    assert item["parameters"] == {"text": "\ufffd", "\ufffd": 1}
    assert item["output"] == {"y": None, "z": "\ufffd"} and item["error"] is None
    assert item["status"] == "failed" and item["created_by"] is None
    assert server.client.get(f"/api/v1/executions/{odd.id}").json() == item
    assert people["alice"].get("/api/v1/executions").status_code == 200
    assert people["alice"].get(f"/api/v1/executions/{odd.id}").status_code == 404


def test_list_filters_and_pages(server: Server) -> None:
    for x in range(3):
        server.execute("double", {"x": x})
    page = server.client.get("/api/v1/executions", params={"notebook": "double", "limit": 2}).json()
    assert len(page["items"]) == 2 and page["total"] >= 3
    assert all(item["notebook"] == "double" for item in page["items"])
    rest = server.client.get(
        "/api/v1/executions", params={"notebook": "double", "limit": 2, "offset": 2}
    ).json()
    assert {i["id"] for i in rest["items"]}.isdisjoint({i["id"] for i in page["items"]})
    failed = server.client.get("/api/v1/executions", params={"status": "failed"}).json()
    assert all(item["status"] == "failed" for item in failed["items"])


def test_openapi_shows_each_notebooks_contract(server: Server) -> None:
    document = server.client.get("/openapi.json").json()
    operation = document["paths"]["/api/v1/notebooks/double/executions"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["parameters"]["required"] == ["x"]
    assert "/api/v1/notebooks/broken/executions" not in document["paths"]


def test_no_auth_is_refused_off_loopback(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbplane",
            "serve",
            "--notebooks-dir",
            str(tmp_path),
            "--host",
            "0.0.0.0",
            "--no-auth",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**__import__("os").environ, "NBPLANE_HOME": str(tmp_path)},
    )
    assert result.returncode == 2 and "loopback" in result.stderr
