"""The remote CLI (login, user, job deploy/execute/logs/...) in subprocesses against a real
``nbplane serve`` on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nbformat
import pytest

from tests.conftest import BACKENDS, database_url, write_notebook
from tests.integration.server_fixture import Server, nbplane, running_server
from tests.receivers import HOOK_SECRET, receiving_webhooks

CLIENT_VARIABLES = ("NBPLANE_URL", "NBPLANE_TOKEN", "NBPLANE_STORE_URL", "NBPLANE_DB_URL")
"""Kept out of a client's environment: it knows the server only by what it logged in with."""


@dataclass
class Cli:
    """The ``nbplane`` command on a user's machine: a home of its own, no store."""

    home: Path
    variables: dict[str, str]

    def run(
        self,
        *args: str,
        check: int | None = 0,
        stdin: str | None = None,
        timeout: float = 120,
        **extra: str,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "nbplane", *args],
            env={**self.variables, **extra},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check is not None:
            assert result.returncode == check, (
                f"nbplane {' '.join(args)}: exit {result.returncode}, wanted {check}"
                f"\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--output", "json").stdout)


@dataclass
class Control:
    server: Server
    root: Path
    tokens: int = 0

    def admin(self, *args: str) -> str:
        """A local admin command on the server's database."""
        return nbplane(*args, environment=self.server.environment).stdout

    def user(self, name: str, *teams: str) -> Cli:
        """A new user with these teams, logged in on a machine of their own."""
        self.admin("user", "create", name, *[f"--team={team}" for team in teams])
        return self.login(name)

    def login(self, name: str) -> Cli:
        """The user logged in with a new token: the server caches what a token may do for a
        few seconds, a new token sees membership changes at once."""
        self.tokens += 1
        token = self.admin("token", "create", f"{name}-{self.tokens}", "--user", name).strip()
        cli = client(self.root / f"home-{name}")
        cli.run("login", "--url", self.server.url, "--token", token)
        return cli

    @cached_property
    def alice(self) -> Cli:
        """In team analytics."""
        return self.user("alice", "analytics")

    @cached_property
    def bob(self) -> Cli:
        """In team ops only."""
        return self.user("bob", "ops")


def client(home: Path) -> Cli:
    variables = {key: value for key, value in os.environ.items() if key not in CLIENT_VARIABLES}
    return Cli(home, {**variables, "NBPLANE_HOME": str(home), "COLUMNS": "1000", "NO_COLOR": "1"})


@pytest.fixture(scope="module", params=BACKENDS)
def control(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Control]:
    root = tmp_path_factory.mktemp("control")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    with database_url(request.param, root) as url:
        store = url if url.startswith("postgresql") else f"sqlite:///{root / 'nbplane.db'}"
        with running_server(
            notebooks,
            root / "server-home",
            store,
            environment={
                "NBPLANE_DB_URL": url,
                "NBPLANE_NOTIFY_ALLOW_PRIVATE_HOSTS": "true",  # the tests' webhooks: loopback
            },
        ) as server:
            control = Control(server, root)
            control.alice, control.bob  # noqa: B018  both exist before any test
            yield control


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """A failure reads as one `error:` line naming the problem, never a traceback."""
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], result.stderr


def new_job(control: Control, name: str, *cells: str) -> Path:
    """A job directory made by `nbplane job create` (team analytics), its notebook replaced
    by ``cells`` when given."""
    parent = control.root / "jobs"
    parent.mkdir(exist_ok=True)
    control.alice.run("job", "create", name, "--team", "analytics", "--directory", str(parent))
    if cells:
        write_notebook(parent / name / "10_hello.ipynb", list(cells))
    return parent / name


def wait_for_status(cli: Cli, job: str, wanted: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = cli.json("job", "executions", job)["items"]
        if items and items[0]["status"] == wanted:
            return dict(items[0])
        time.sleep(0.2)
    raise AssertionError(f"{job} is not {wanted} after {timeout}s: {items}")


def wait_for_log(cli: Cli, job: str, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in cli.run("job", "logs", job).stdout:
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in the log of {job} after {timeout}s")


SLEEPY = "import time\nprint('sleeping', flush=True)\ntime.sleep(120)"


# -- login


def test_login_checks_the_token_and_saves_it_for_the_owner_only(control: Control) -> None:
    cli = client(control.root / "home-login")
    refused = cli.run("login", "--url", control.server.url, "--token", "nbp_wrong", check=None)
    one_line_error(refused, "unknown or revoked")
    assert not (cli.home / "credentials.json").exists()

    one_line_error(
        cli.run("login", "--url", control.server.url, stdin="\n", check=None), "no token"
    )
    unreachable = cli.run("login", "--url", "http://127.0.0.1:9", "--token", "x", check=None)
    one_line_error(unreachable, "cannot reach", "http://127.0.0.1:9")

    token = control.admin("token", "create", "login-test", "--user", "alice").strip()
    logged_in = cli.run("login", "--url", control.server.url + "/", stdin=token + "\n")
    assert "alice" in logged_in.stdout and "analytics" in logged_in.stdout
    assert token not in logged_in.stdout + logged_in.stderr
    assert not logged_in.stderr, "a piped token is read without a prompt or warning"
    saved = cli.home / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text()) == {"url": control.server.url, "token": token}
    assert isinstance(cli.json("job", "list"), list)

    cli.run("logout")
    assert not saved.exists()
    one_line_error(cli.run("job", "list", check=None), "nbplane login")


def test_url_and_token_from_the_environment_need_no_login(control: Control) -> None:
    token = control.admin("token", "create", "env-test", "--user", "alice").strip()
    cli = client(control.root / "home-env")
    listed = cli.run(
        "job", "list", "--output", "json", NBPLANE_URL=control.server.url, NBPLANE_TOKEN=token
    )
    assert isinstance(json.loads(listed.stdout), list)


def test_a_saved_token_is_not_sent_to_another_server(control: Control) -> None:
    other = control.alice.run("job", "list", check=None, NBPLANE_URL="http://127.0.0.1:9")
    one_line_error(other, "no token for http://127.0.0.1:9")


# -- users


def test_users_and_teams(control: Control) -> None:
    listed = {u["name"]: u for u in json.loads(control.admin("user", "list", "--output", "json"))}
    assert listed["alice"]["teams"] == ["analytics"] and listed["bob"]["teams"] == ["ops"]
    assert listed["admin"]["admin"], "made with the first token"
    carol = control.user("carol")
    one_line_error(carol.run("job", "list", check=None), "no team", "nbplane user join")
    control.admin("user", "join", "carol", "ops")
    control.admin("user", "join", "carol", "analytics")
    carol = control.login("carol")
    one_line_error(carol.run("job", "list", check=None), "analytics, ops", "--team")
    assert isinstance(carol.json("job", "list", "--team", "ops"), list)
    control.admin("user", "leave", "carol", "analytics")
    carol = control.login("carol")
    assert isinstance(carol.json("job", "list"), list), "ops, the only team left"

    duplicate = subprocess.run(
        [sys.executable, "-m", "nbplane", "user", "create", "carol"],
        env=control.server.environment,
        capture_output=True,
        text=True,
    )
    assert duplicate.returncode == 2 and "exists already" in duplicate.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "nbplane", "user", "join", "nobody", "ops"],
        env=control.server.environment,
        capture_output=True,
        text=True,
    )
    assert unknown.returncode == 2 and "no user named 'nobody'" in unknown.stderr


# -- deploy, execute, watch


def test_deploy_execute_wait_logs_list_show(control: Control) -> None:
    directory = new_job(control, "hello")
    alice = control.alice
    deployed = alice.run("job", "deploy", str(directory))
    assert "created job analytics/hello" in deployed.stdout
    assert "deployed analytics/hello version" in deployed.stdout
    assert "nbplane job execute hello" in deployed.stdout, "no schedule: how to run it"

    ran = alice.run("job", "execute", "hello", "--arguments", '{"who": "tësts"}', "--wait")
    assert "hello, tësts" in ran.stdout, "the log is followed"
    assert "completed" in ran.stdout.strip().splitlines()[-1]

    assert "hello, tësts" in alice.run("job", "logs", "hello").stdout, "latest execution"
    page = alice.json("job", "executions", "hello")
    assert page["total"] == 1 and page["items"][0]["status"] == "completed"
    execution = page["items"][0]["id"]
    assert "hello, tësts" in alice.run("job", "logs", "hello", execution).stdout
    assert "hello, tësts" in alice.run("job", "logs", "hello", execution, "--follow").stdout

    jobs = {j["name"]: j for j in alice.json("job", "list")}
    assert jobs["hello"]["deployment"]["version"]
    shown = alice.json("job", "show", "hello")
    assert shown["team"] == "analytics"
    assert shown["last_executions"][0]["id"] == execution
    table = alice.run("job", "show", "hello")  # piped: plain rows, the tables' titles on stderr
    assert "deployment" in table.stderr
    assert execution in table.stdout and "completed" in table.stdout
    assert "hello" in alice.run("job", "list").stdout

    waited = alice.run("job", "execute", "hello", "--wait", "-o", "json")
    assert json.loads(waited.stdout)["status"] == "completed"  # the log went to stderr
    assert "hello, " in waited.stderr
    redeployed = alice.json("job", "deploy", str(directory))
    assert (redeployed["name"], redeployed["created"]) == ("hello", False)


def test_execute_wait_exit_code_follows_the_status(control: Control) -> None:
    directory = new_job(control, "broken", "print('before')", "1 / 0")
    control.alice.run("job", "deploy", str(directory), "--retries", "1", "--retry-delay", "0.1")
    failed = control.alice.run("job", "execute", "broken", "--wait", check=1)
    assert "before" in failed.stdout and "ZeroDivisionError" in failed.stdout
    assert "=== nbplane: attempt 2 of 2 ===" in failed.stdout, "the log of both attempts"
    assert "attempts of" in failed.stderr and "user" in failed.stdout, "the attempts table"
    last = failed.stdout.strip().splitlines()[-1]
    assert "failed" in last and "(2 of 2 attempts ran)" in last
    control.alice.run("job", "deploy", str(directory), "--retries", "0")
    started = control.alice.run("job", "execute", "broken")
    assert "nbplane job logs broken" in started.stdout, "how to follow it"


def test_schedule_is_kept_on_redeploy_until_changed(control: Control) -> None:
    directory = new_job(control, "nightly")
    alice = control.alice
    first = alice.run(
        "job",
        "deploy",
        str(directory),
        "--schedule",
        "0 6 * * *",
        "--timezone",
        "Europe/Berlin",
        "--reason",
        "first",
    )
    assert "next run" in first.stdout and "Europe/Berlin" in first.stdout
    version = alice.json("job", "show", "nightly")["deployment"]["version"]
    retrying = alice.run(
        "job", "deploy", str(directory), "--retries", "3", "--retry-on", "platform"
    ).stdout
    assert "next run" in retrying
    assert (
        "3 on platform failures, the first after 60s" in alice.run("job", "show", "nightly").stdout
    )
    refused = alice.run("job", "deploy", str(directory), "--retries", "11", check=None)
    assert refused.returncode == 2 and "--retries" in refused.stderr
    (directory / "20_more.sql").write_text("SELECT 1", encoding="utf-8")
    alice.run("job", "deploy", str(directory), "--arguments", '{"who": "cron"}')
    deployment = alice.json("job", "show", "nightly")["deployment"]
    assert deployment["version"] != version, "the new upload is deployed"
    assert deployment["schedule"] == "0 6 * * *" and deployment["timezone"] == "Europe/Berlin"
    assert deployment["arguments"] == {"who": "cron"} and deployment["next_run_at"]
    assert (deployment["retries"], deployment["retry_on"]) == (3, "platform"), "kept"
    disabled = alice.run("job", "deploy", str(directory), "--disable")
    assert "disabled" in disabled.stdout
    assert alice.json("job", "show", "nightly")["deployment"]["enabled"] is False
    alice.run("job", "deploy", str(directory), "--schedule", "", "--enable")
    assert alice.json("job", "show", "nightly")["deployment"]["schedule"] is None

    bad = alice.run("job", "deploy", str(directory), "--schedule", "every day", check=None)
    one_line_error(bad)
    not_a_job = alice.run("job", "deploy", str(control.root), check=None)
    assert not_a_job.returncode == 2 and "Traceback" not in not_a_job.stderr


def test_a_failed_execution_is_told_to_the_deployments_webhook(control: Control) -> None:
    """Deploy with --notify-webhook, a real job fails in its notebook: the webhook hears which
    cell and line, and the CLI shows the notification sent and the URL only redacted."""
    directory = new_job(control, "noisy", "print('before')", "x = 1\n1 / 0")
    alice = control.alice
    with receiving_webhooks() as receiver:
        deployed = alice.run(
            "job",
            "deploy",
            str(directory),
            "--notify-webhook",
            receiver.url,
            "--notify-on",
            "failed,completed",
        )
        assert HOOK_SECRET not in deployed.stdout
        target = alice.json("job", "show", "noisy")["deployment"]["notifications"]
        assert target == [
            {
                "url": f"http://127.0.0.1:{receiver.port}/…",
                "to": None,
                "events": ["failed", "completed"],
                "late_minutes": None,
            }
        ]
        alice.run("job", "execute", "noisy", "--wait", check=1)
        deadline = time.monotonic() + 30
        while not receiver.posts and time.monotonic() < deadline:
            time.sleep(0.2)
        [(_, payload)] = receiver.posts
    step = payload["failed_step"]
    assert (step["file"], step["cell_number"], step["line"]) == ("10_hello.ipynb", 2, 2)
    assert "ZeroDivisionError" in step["summary"]
    assert f"analytics/noisy failed\nexecution: {payload['execution_id']}" in payload["text"]
    assert payload["html_url"].endswith(f"/executions/{payload['execution_id']}/html")
    page = control.server.client.get(urlsplit(payload["html_url"]).path).text
    block = page[page.index("<main>") : page.index("</div>", page.index("<main>"))]
    assert block.startswith('<main><div class="nbplane-failure"'), "the page opens with it"
    assert ">step 2 (10_hello.ipynb#2), 10_hello.ipynb cell 2, line 2</a>" in block
    assert "ZeroDivisionError: division by zero" in block
    shown = alice.run("job", "execution", "noisy").stdout
    assert "10_hello.ipynb cell 2, line 2: failed" in shown
    assert f"http://127.0.0.1:{receiver.port}/…" in shown and "sent" in shown
    assert HOOK_SECRET not in shown
    alice.run("job", "deploy", str(directory), "--no-notifications")
    assert alice.json("job", "show", "noisy")["deployment"]["notifications"] == []


def test_properties_and_secrets_never_show_secret_values(control: Control) -> None:
    directory = new_job(
        control,
        "keeper",
        "print('property', job_input.get_property('limit'))\n"
        "print('secret', job_input.get_secret('password'))",
    )
    alice = control.alice
    alice.run("job", "deploy", str(directory))
    assert alice.json(
        "job",
        "properties",
        "keeper",
        "--set",
        "limit=10",
        "--set",
        "label=plain text",
        "--set",
        "tags=[1, 2]",
    ) == {"limit": 10, "label": "plain text", "tags": [1, 2]}
    assert alice.json("job", "properties", "keeper", "--unset", "tags") == {
        "limit": 10,
        "label": "plain text",
    }
    assert "plain text" in alice.run("job", "properties", "keeper").stdout

    value = "s3cr3t-value-42"
    set_secret = alice.run(
        "job", "secrets", "keeper", "--set", f"password={value}", "--output", "json"
    )
    assert json.loads(set_secret.stdout) == {"names": ["password"]}
    prompted = alice.run("job", "secrets", "keeper", "--set", "api_key", stdin="k3y-value\n")
    assert "api_key" in prompted.stdout and "password" in prompted.stdout
    ran = alice.run("job", "execute", "keeper", "--wait")
    assert "property 10" in ran.stdout
    for output in (
        set_secret,
        prompted,
        ran,
        alice.run("job", "logs", "keeper"),
        alice.run("job", "secrets", "keeper"),
        alice.run("job", "show", "keeper", "--output", "json"),
    ):
        assert value not in output.stdout + output.stderr
        assert "k3y-value" not in output.stdout + output.stderr
    assert alice.json("job", "secrets", "keeper", "--unset", "api_key") == {"names": ["password"]}


def test_download_round_trip(control: Control, tmp_path: Path) -> None:
    directory = new_job(control, "roundtrip")
    (directory / "helpers").mkdir()
    (directory / "helpers" / "util.py").write_text("X = 1\n", encoding="utf-8")
    control.alice.run("job", "deploy", str(directory))
    target = tmp_path / "copy"
    done = control.alice.run("job", "download", "roundtrip", "--to", str(target))
    assert "unpacked 3 files" in done.stdout
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["10_hello.ipynb", "config.ini", "helpers/util.py"]
    for name in ("config.ini", "helpers/util.py"):
        assert (target / name).read_bytes() == (directory / name).read_bytes()
    sources = [
        [c.source for c in nbformat.read(d / "10_hello.ipynb", as_version=4).cells]
        for d in (directory, target)
    ]
    assert sources[0] == sources[1]
    control.alice.run("job", "run", str(target))  # the download is a runnable job

    again = control.alice.run("job", "download", "roundtrip", "--to", str(target), check=None)
    one_line_error(again, "not empty")
    version = control.alice.json("job", "show", "roundtrip")["deployment"]["version"]
    control.alice.run(
        "job", "download", "roundtrip", "--to", str(tmp_path / "by-version"), "--version", version
    )
    assert (tmp_path / "by-version" / "config.ini").is_file()


def test_cancel_and_delete_with_a_running_execution(control: Control) -> None:
    directory = new_job(control, "sleepy", SLEEPY)
    alice = control.alice
    alice.run("job", "deploy", str(directory))
    alice.run("job", "execute", "sleepy")
    first = wait_for_status(alice, "sleepy", "running")
    wait_for_log(alice, "sleepy", "sleeping")
    cancelled = alice.run("job", "cancel", "sleepy", first["id"])
    assert first["id"] in cancelled.stdout
    wait_for_status(alice, "sleepy", "cancelled")

    alice.run("job", "execute", "sleepy")
    wait_for_status(alice, "sleepy", "running")
    asked = alice.run("job", "delete", "sleepy", check=None, stdin="")
    one_line_error(asked, "--yes")
    refused = alice.run("job", "delete", "sleepy", "--yes", check=None)
    one_line_error(refused, "--force")
    alice.run("job", "delete", "sleepy", "--yes", "--force")
    one_line_error(alice.run("job", "show", "sleepy", check=None))


def test_execute_wait_on_a_cancelled_execution_exits_130(control: Control) -> None:
    directory = new_job(control, "waited", SLEEPY)
    alice = control.alice
    alice.run("job", "deploy", str(directory))
    waiting = subprocess.Popen(
        [sys.executable, "-m", "nbplane", "job", "execute", "waited", "--wait"],
        env=alice.variables,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        running = wait_for_status(alice, "waited", "running")
        wait_for_log(alice, "waited", "sleeping")
        alice.run("job", "cancel", "waited", running["id"])
        stdout, _ = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 130, stdout
    assert "sleeping" in stdout and "cancelled" in stdout.strip().splitlines()[-1]


# -- errors


def test_unknown_job_is_a_one_line_error(control: Control) -> None:
    for args in (
        ("show", "nope"),
        ("execute", "nope"),
        ("logs", "nope"),
        ("properties", "nope"),
        ("download", "nope"),
        ("delete", "nope", "--yes"),
    ):
        one_line_error(control.alice.run("job", *args, check=None), "nope")
    one_line_error(control.alice.run("job", "show", "Bad Name", check=None))
    one_line_error(
        control.alice.run("job", "execute", "x", "--arguments", "[1]", check=None), "--arguments"
    )


def test_another_teams_job_is_not_found(control: Control) -> None:
    directory = new_job(control, "private")
    control.alice.run("job", "deploy", str(directory))
    control.alice.run("job", "properties", "private", "--set", "a=1")
    bob = control.bob
    for args in (
        ("show", "private"),
        ("show", "private", "--team", "analytics"),
        ("execute", "private", "--team", "analytics"),
        ("properties", "private", "--team", "analytics"),
        ("download", "private", "--team", "analytics"),
        ("delete", "private", "--team", "analytics", "--yes", "--force"),
    ):
        refused = bob.run("job", *args, check=None)
        one_line_error(refused)
        assert "no job 'private'" in refused.stderr or "no team 'analytics'" in refused.stderr
    assert "private" not in json.dumps(bob.json("job", "list"))
    one_line_error(bob.run("job", "list", "--team", "analytics", check=None))
    assert control.alice.json("job", "show", "private")["name"] == "private", "still there"
