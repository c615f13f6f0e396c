"""Notifications of job executions, in-process on :class:`nbplane.testing.FakeExecutor`, sent
for real: webhooks to an HTTP receiver and emails to an SMTP server (aiosmtpd), both on
loopback. What an execution's ending puts in the outbox, what the messages say, retries and
their record, late executions, the webhook URL kept sealed and shown redacted, and the checks
that keep a team's webhook off the server's own network (SSRF)."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nbplane.deployments.models import (
    CreateNotification,
    DeployJob,
    DescribeJobExecution,
    ExecuteJob,
    FailureKind,
    JobExecutionStatus,
    UpdateDeployment,
)
from nbplane.deployments.notifications import Notifier, hidden
from nbplane.deployments.reconciler import DeploymentReconciler
from nbplane.deployments.service import DeploymentService
from nbplane.errors import InvalidInput, NotFound
from nbplane.jobs.models import CreateRun, DescribeRunStep, StepStatus
from nbplane.settings import Settings
from nbplane.store import open_store
from nbplane.testing import FakeExecutor, Plan
from tests.receivers import (
    HOOK_SECRET,
    Mailbox,
    Receiver,
    free_port,
    receiving_mail,
    receiving_webhooks,
)
from tests.unit.deployed import ALICE, JOB, TEAM, deploy_fake_job

SERVER_URL = "https://nbplane.example.com"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving_webhooks() as found:
        yield found


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    with receiving_mail() as found:
        yield found


@dataclass
class Plane:
    service: DeploymentService
    executor: FakeExecutor
    job_id: int

    def deploy(self, *targets: dict[str, Any], **fields: Any) -> None:
        notifications = [CreateNotification.model_validate(target) for target in targets]
        self.service.deploy(
            ALICE, TEAM, JOB, DeployJob(timeout=60, notifications=notifications, **fields)
        )

    def execute(self) -> str:
        return self.service.execute(ALICE, TEAM, JOB, ExecuteJob()).id

    def execution(self, execution_id: str) -> DescribeJobExecution:
        return self.service.execution(ALICE, TEAM, JOB, execution_id)

    def send(self) -> None:
        """One pass of the notifier, as the reconciler's loop runs it."""
        asyncio.run(Notifier(self.service).run())


@pytest.fixture
def plane(
    tmp_path: Path, store_url: str, mailbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Plane]:
    settings = Settings(
        home=tmp_path / "home",
        job_server_url=SERVER_URL,
        notify_allow_private_hosts=True,
        notify_attempts=3,
        notify_retry_seconds=0.05,
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,
        smtp_tls="none",
        smtp_sender="nbplane@example.com",
    )
    store = open_store(store_url)
    service, executor = deploy_fake_job(store, settings, tmp_path, monkeypatch)
    yield Plane(service, executor, store.deployments.job_id(TEAM, JOB))
    store.engine.dispose()


def fail_with_a_step(plane: Plane) -> str:
    """An execution the monitor fails (its process ended without a result, as FakeExecutor's
    failing plan has it), after the job recorded step 2 failing in cell 3, line 4."""
    plane.executor.plan(Plan.fail("OOMKilled", exit_code=137))
    execution = plane.execute()

    async def steps() -> None:
        monitor = DeploymentReconciler(plane.service)
        await monitor.watch()  # started
        store = plane.service.store
        run = store.create_run(
            CreateRun(
                job_dir="/job",
                job_name=JOB,
                arguments={},
                db_url="sqlite://",
                resumed=False,
                plan=["10_main.ipynb"],
            ),
            execution,
        )
        store.deployments.set_run(execution, run.id)
        store.add_step(run.id, step(0, StepStatus.SUCCEEDED, None), None)
        error = {"line": 4, "summary": "ZeroDivisionError: division by zero"}
        store.add_step(run.id, step(1, StepStatus.FAILED, error), None)
        await monitor.watch()  # the process ended: failed

    asyncio.run(steps())
    plane.service.on_change.clear()  # the monitor's loop is gone: it needs no waking
    assert plane.execution(execution).status == JobExecutionStatus.FAILED
    return execution


def step(position: int, status: StepStatus, error: dict[str, Any] | None) -> DescribeRunStep:
    return DescribeRunStep(
        position=position,
        name=f"10_main.ipynb cell {position + 2}",
        kind="notebook",
        file="10_main.ipynb",
        cell_number=position + 2,
        status=status,
        code_hash="c",
        chain_hash=f"h{position}",
        error=error,
    )


def test_a_failed_execution_is_told_to_its_webhook_and_by_email(
    plane: Plane, receiver: Receiver, mailbox: Mailbox
) -> None:
    plane.deploy({"url": receiver.url}, {"to": ["oncall@example.com", "lead@example.com"]})
    execution = fail_with_a_step(plane)
    pending = plane.execution(execution).notifications
    assert [(sent.address, sent.status, sent.attempts) for sent in pending] == [
        (f"http://127.0.0.1:{receiver.port}/…", "pending", 0),
        ("oncall@example.com, lead@example.com", "pending", 0),
    ]
    plane.send()

    [(headers, payload)] = receiver.posts
    link = f"{SERVER_URL}/api/v1/teams/{TEAM}/jobs/{JOB}/executions/{execution}"
    assert headers["Host"] == f"127.0.0.1:{receiver.port}"
    assert headers["Content-Type"] == "application/json"
    assert payload["event"] == "failed" and payload["status"] == "failed"
    assert (payload["team"], payload["job"], payload["execution_id"]) == (TEAM, JOB, execution)
    assert payload["failed_step"] == {
        "position": 2,
        "name": "10_main.ipynb cell 3",
        "file": "10_main.ipynb",
        "cell_number": 3,
        "line": 4,
        "summary": "ZeroDivisionError: division by zero",
    }
    assert (payload["log_url"], payload["html_url"]) == (link + "/logs", link + "/html")
    assert payload["execution_url"] == link
    text = payload["text"]
    assert text.startswith(f"[nbplane] {TEAM}/{JOB} failed\nexecution: {execution}")
    assert "reason: the job's process ended (OOMKilled, exit code 137)" in text
    assert "failed step 2: 10_main.ipynb cell 3, line 4: ZeroDivisionError" in text

    [mail] = mailbox.messages
    assert mail["Subject"] == f"[nbplane] {TEAM}/{JOB} failed"
    assert mail["From"] == "nbplane@example.com"
    assert mail["To"] == "oncall@example.com, lead@example.com"
    body = mail.get_content().replace("\r\n", "\n")
    assert body == text.removeprefix("[nbplane] ") + "\n"
    assert f"log: {link}/logs\npage: {link}/html\napi: {link}\n" in body

    shown = plane.execution(execution).notifications
    assert [(sent.status, sent.attempts, sent.last_error) for sent in shown] == [
        ("sent", 1, None),
        ("sent", 1, None),
    ]
    assert all(sent.sent_at is not None for sent in shown)
    plane.send()  # sent once: a second pass sends nothing
    assert len(receiver.posts) == 1 and len(mailbox.messages) == 1


def test_each_target_hears_only_the_events_it_wants(plane: Plane, receiver: Receiver) -> None:
    plane.deploy({"url": receiver.url}, {"url": receiver.url + "/done", "events": ["completed"]})
    completed, cancelled = plane.execute(), plane.execute()
    plane.service.lifecycle.start(completed, 1, {}, "hash-of-the-credential")
    plane.service.lifecycle.finish(completed, JobExecutionStatus.COMPLETED, None)
    plane.service.lifecycle.finish(cancelled, JobExecutionStatus.CANCELLED, "cancelled")
    plane.send()
    [(_, payload)] = receiver.posts
    assert (payload["event"], payload["execution_id"]) == ("completed", completed)
    assert payload["failed_step"] is None
    assert [sent.target for sent in plane.execution(completed).notifications] == [1]
    assert plane.execution(cancelled).notifications == []


def test_an_attempt_that_will_be_retried_is_told_nobody(plane: Plane, receiver: Receiver) -> None:
    plane.deploy({"url": receiver.url}, retries=1, retry_delay=1)
    execution = plane.execute()
    lifecycle = plane.service.lifecycle
    lifecycle.start(execution, 1, {}, "hash-of-attempt-1")
    lifecycle.finish(
        execution, JobExecutionStatus.FAILED, "pod lost", attempt=1, failure=FailureKind.PLATFORM
    )
    assert plane.execution(execution).status == JobExecutionStatus.RETRYING
    assert plane.execution(execution).notifications == []
    lifecycle.start(execution, 2, {}, "hash-of-attempt-2")
    lifecycle.finish(
        execution, JobExecutionStatus.FAILED, "pod lost", attempt=2, failure=FailureKind.PLATFORM
    )
    plane.send()
    [(_, payload)] = receiver.posts
    assert (payload["event"], payload["status"]) == ("failed", "failed")
    assert "2 of 2 attempts ran" in payload["text"]


def test_a_failed_delivery_is_retried_with_backoff_and_recorded(
    plane: Plane, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    plane.service.settings.notify_retry_seconds = 0.3  # room for a loaded machine's pauses
    plane.deploy({"url": receiver.url})
    execution = fail_with_a_step(plane)
    plane.send()
    [first] = plane.execution(execution).notifications
    assert (first.status, first.attempts) == ("pending", 1)
    assert first.last_error is not None
    assert first.last_error.startswith("POST to 127.0.0.1 answered HTTP 500")
    assert first.next_attempt_at is not None
    plane.send()  # not due yet: the retry waits 0.3 s, then 0.6 s
    assert len(receiver.posts) == 1
    for wait in (0.35, 0.65):
        time.sleep(wait)
        plane.send()
    [sent] = plane.execution(execution).notifications
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 3, None)
    assert len(receiver.posts) == 3
    ended = plane.execution(execution)
    assert ended.status == JobExecutionStatus.FAILED  # the execution is as it ended
    assert ended.reason is not None and ended.reason.startswith("the job's process ended")


def test_a_notification_that_never_goes_through_ends_failed(plane: Plane) -> None:
    closed = free_port()  # nothing listens there
    plane.deploy({"url": f"http://127.0.0.1:{closed}/hook"})
    execution = fail_with_a_step(plane)
    for _ in range(3):
        plane.send()
        time.sleep(0.12)
    [given_up] = plane.execution(execution).notifications
    assert (given_up.status, given_up.attempts) == ("failed", 3)
    assert given_up.next_attempt_at is None
    assert given_up.last_error is not None and "ConnectError" in given_up.last_error
    assert plane.execution(execution).status == JobExecutionStatus.FAILED


def test_a_scheduled_execution_still_running_late_is_told_once(
    plane: Plane, receiver: Receiver
) -> None:
    plane.deploy(
        {"url": receiver.url, "events": ["late"], "late_minutes": 5},
        {"url": receiver.url + "/patient", "events": ["late"], "late_minutes": 30},
        schedule="0 3 * * *",
    )
    deployment = plane.service.deployments.deployment(plane.job_id)
    assert deployment is not None
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    execution = plane.service.lifecycle.queue(
        plane.job_id, deployment, "schedule", {}, scheduled_for=due
    )
    assert execution is not None
    plane.send()
    plane.send()  # still late: not told twice
    [(_, payload)] = receiver.posts
    assert payload["event"] == "late" and payload["status"] == "queued"
    assert payload["text"].startswith(
        f"[nbplane] {TEAM}/{JOB} is late: still queued 10 minutes after it was due"
    )
    assert payload["scheduled_for"] == due.isoformat()
    [told] = plane.execution(execution).notifications
    assert (told.target, told.event, told.status) == (0, "late", "sent")


def test_the_webhook_url_is_kept_sealed_and_shown_redacted(
    plane: Plane, receiver: Receiver
) -> None:
    plane.deploy({"url": receiver.url})
    shown = plane.service.job(ALICE, TEAM, JOB)
    assert shown.deployment is not None
    [target] = shown.deployment.notifications
    assert target.url == f"http://127.0.0.1:{receiver.port}/…"
    assert HOOK_SECRET not in shown.model_dump_json()
    [kept] = plane.service.deployments.notification_targets(plane.job_id)
    assert kept.sealed_url is not None and HOOK_SECRET not in kept.sealed_url
    # a change that leaves the notifications out keeps them whole
    plane.service.update_deployment(ALICE, TEAM, JOB, UpdateDeployment(enabled=False))
    execution = fail_with_a_step(plane)
    plane.send()
    assert [sent.status for sent in plane.execution(execution).notifications] == ["sent"]
    assert len(receiver.posts) == 1
    assert HOOK_SECRET not in plane.execution(execution).model_dump_json()
    plane.service.update_deployment(ALICE, TEAM, JOB, UpdateDeployment(notifications=[]))
    assert plane.service.deployments.notification_targets(plane.job_id) == []


@pytest.mark.parametrize(
    ("url", "allow_private", "refusal"),
    [
        ("http://169.254.169.254/latest/meta-data", True, "link-local"),
        ("http://[fe80::1]/hook", True, "link-local"),
        ("http://127.0.0.1:8080/hook", False, "loopback, private or reserved"),
        ("http://localhost/hook", False, "loopback, private or reserved"),
        ("http://10.1.2.3/hook", False, "loopback, private or reserved"),
        ("http://[::ffff:192.168.0.1]/hook", False, "loopback, private or reserved"),
    ],
)
def test_a_webhook_to_an_internal_address_is_refused_when_deployed(
    plane: Plane, url: str, allow_private: bool, refusal: str
) -> None:
    plane.service.settings.notify_allow_private_hosts = allow_private
    with pytest.raises(InvalidInput, match=refusal) as refused:
        plane.deploy({"url": url})
    assert refused.value.fields["field"] == "notifications[0].url"


def test_a_webhook_name_that_resolves_inside_is_refused_when_sent(
    plane: Plane, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name is checked for what it resolves to at each delivery (it may have changed since
    the deploy), and the request goes to the address checked, named in Host."""
    real = socket.getaddrinfo
    host = "hooks.example.test"

    def resolve(name: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if name == host else name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    plane.service.settings.notify_allow_private_hosts = False
    plane.service.settings.notify_retry_seconds = 60  # the refused one waits
    plane.deploy({"url": f"http://{host}:{receiver.port}/services/{HOOK_SECRET}"})
    refused_execution = fail_with_a_step(plane)
    plane.send()
    [refused] = plane.execution(refused_execution).notifications
    assert refused.last_error is not None
    assert refused.last_error.startswith(
        f"webhook refused: {host} resolves to 127.0.0.1, which is a loopback"
    )
    assert receiver.posts == []

    plane.service.settings.notify_allow_private_hosts = True
    allowed_execution = fail_with_a_step(plane)
    plane.send()
    [(headers, payload)] = receiver.posts
    assert headers["Host"] == f"{host}:{receiver.port}"
    assert payload["execution_id"] == allowed_execution


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ({"url": "http://a.example/x", "to": ["a@example.com"]}, "either 'url'"),
        ({}, "either 'url'"),
        ({"url": "ftp://a.example/x"}, "http or https"),
        ({"url": "http://a.example:99999/x"}, "port"),
        ({"to": ["a@example.com\nBcc: b@example.com"]}, "one plain email address"),
        ({"to": ["Someone <a@example.com>"]}, "one plain email address"),
        ({"url": "http://a.example/x", "events": ["late"]}, "go together"),
        ({"url": "http://a.example/x", "late_minutes": 5}, "go together"),
        ({"url": "http://a.example/x", "events": ["exploded"]}, "failed"),
    ],
)
def test_a_target_that_makes_no_sense_is_refused(target: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        CreateNotification.model_validate(target)


def test_email_needs_an_smtp_server(plane: Plane) -> None:
    plane.service.settings.smtp_host = None
    with pytest.raises(InvalidInput, match="NBPLANE_SMTP_HOST") as refused:
        plane.deploy({"url": "http://a.example/x"}, {"to": ["a@example.com"]})
    assert refused.value.fields["field"] == "notifications[1].to"


def test_the_linked_page_shows_the_executions_run(plane: Plane) -> None:
    execution = fail_with_a_step(plane)
    page = plane.service.html(ALICE, TEAM, JOB, execution)
    assert page.startswith("<!DOCTYPE html>")
    words = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert f"{JOB} · run " in words and "2 10_main.ipynb cell 3 failed" in words
    block = "Failed at step 2 (10_main.ipynb cell 3), 10_main.ipynb cell 3, line 4 ZeroDivision"
    assert block in words, "the page opens with the failed step, though the run never ended"
    queued = plane.execute()
    with pytest.raises(NotFound, match="ran no step yet"):
        plane.service.html(ALICE, TEAM, JOB, queued)


def test_an_attempts_error_never_shows_the_webhooks_secret_parts() -> None:
    url = "https://user:pw@hooks.example.com/services/T0/B0/XYZ?token=abc"
    said = f"InvalidURL('{url}'), then /services/T0/B0/XYZ"
    assert hidden(url, said) == "InvalidURL('https://…@hooks.example.com…?…'), then …"
