"""Notifications of job executions: a webhook's JSON POST or an email, sent from the outbox.

The lifecycle puts an execution's notifications in the outbox when its status becomes final,
and :class:`Notifier` (a loop of the deployments reconciler) adds ``late`` ones, sends what is
due and records every attempt, so sending never holds up a job, the monitor or the scheduler.
A failed attempt is retried after ``NBPLANE_NOTIFY_RETRY_SECONDS``, doubling, up to
``NBPLANE_NOTIFY_ATTEMPTS`` in all; a notification never changes its execution.

A webhook URL is the team's to choose, so the server refuses to call its own neighbours with
it: the host is resolved, every address it resolves to is checked (loopback, private, link-local
and other non-public ranges are refused unless ``NBPLANE_NOTIFY_ALLOW_PRIVATE_HOSTS``; link-local
always), and the request goes to the address checked, not to a second lookup that could answer
otherwise. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from nbplane._time import now
from nbplane.deployments.models import (
    DescribeJobExecution,
    NotificationDelivery,
    NotificationEvent,
    NotificationStatus,
    NotificationTarget,
)
from nbplane.errors import NbplaneError
from nbplane.jobs.models import StepStatus
from nbplane.settings import Settings

if TYPE_CHECKING:
    from nbplane.deployments.service import DeploymentService

log = logging.getLogger("nbplane.deployments")

SEND_TIMEOUT_SECONDS = 10.0
CLAIM_SECONDS = 60.0
"""A claimed notification whose sender died is tried again this long after the claim."""
ERROR_CHARACTERS = 500


class DeliveryError(NbplaneError):
    """A notification could not be sent; its message is recorded as the attempt's error."""


def refused_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool
) -> str | None:
    """Why a webhook may not be sent to ``address``, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local:
        return "is link-local (where cloud metadata servers answer)"
    if address.is_multicast or address.is_unspecified:
        return "is not a host's address"
    if not address.is_global and not allow_private:
        return (
            "is a loopback, private or reserved address "
            "(NBPLANE_NOTIFY_ALLOW_PRIVATE_HOSTS allows them)"
        )
    return None


def refused_webhook(url: str, allow_private: bool) -> str | None:
    """Why a webhook is refused when it is saved, as its host is written (a refused address,
    or localhost), or None; names are resolved and checked again at each delivery."""
    name = urlsplit(url).hostname or ""
    local = name == "localhost" or name.endswith(".localhost")
    try:
        address = ipaddress.ip_address("127.0.0.1" if local else name)
    except ValueError:
        return None
    reason = refused_address(address, allow_private)
    return f"webhook refused: {name} {reason}" if reason else None


async def resolve_checked(url: str, allow_private: bool) -> str:
    """The address to send ``url``'s request to: its host resolved, every address checked."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise DeliveryError(f"cannot resolve {host}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in found]
    for address in addresses:  # all of them: any one of several could be used to reach inside
        reason = refused_address(address, allow_private)
        if reason:
            raise DeliveryError(f"webhook refused: {host} resolves to {address}, which {reason}")
    if not addresses:
        raise DeliveryError(f"cannot resolve {host}: no address")
    return str(addresses[0])


async def post_webhook(url: str, payload: dict[str, Any], allow_private: bool) -> None:
    """POST ``payload`` as JSON to the checked address of ``url``'s host, with the host's name
    in the Host header and, for https, in SNI and the certificate check."""
    import httpx

    parts = urlsplit(url)
    address = await resolve_checked(url, allow_private)
    literal = f"[{address}]" if ":" in address else address
    userinfo = parts.netloc.rpartition("@")[0]
    port = f":{parts.port}" if parts.port else ""
    pinned = parts._replace(netloc=f"{userinfo}@{literal}{port}" if userinfo else literal + port)
    host = parts.netloc.rpartition("@")[2]
    try:
        async with httpx.AsyncClient(
            timeout=SEND_TIMEOUT_SECONDS, follow_redirects=False, trust_env=False
        ) as client:
            response = await client.post(
                pinned.geturl(),
                json=payload,
                headers={"Host": host, "User-Agent": "nbplane"},
                extensions={"sni_hostname": parts.hostname or ""},
            )
    except (httpx.HTTPError, ValueError) as exc:
        raise DeliveryError(f"POST to {parts.hostname} failed: {hidden(url, repr(exc))}") from None
    if not response.is_success:
        raise DeliveryError(
            f"POST to {parts.hostname} answered HTTP {response.status_code}: "
            f"{hidden(url, response.text[:200])}"
        )


def hidden(url: str, text: str) -> str:
    """``text`` without the parts of ``url`` that may be its credential (path, query, user)."""
    parts = urlsplit(url)
    secret = [parts.path, parts.query, parts.netloc.rpartition("@")[0]]
    for part in sorted((part for part in secret if len(part) > 1), key=len, reverse=True):
        text = text.replace(part, "…")
    return text


def send_email(settings: Settings, to: list[str], subject: str, body: str) -> None:
    """Send a plain-text email through the SMTP server of the settings (blocking: run it in a
    thread)."""
    import smtplib
    import ssl
    from email.message import EmailMessage

    if not settings.smtp_host:
        raise DeliveryError("no SMTP server: set NBPLANE_SMTP_HOST")
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message.set_content(body)
    context = ssl.create_default_context()
    try:
        smtp = (
            smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=SEND_TIMEOUT_SECONDS,
                context=context,
            )
            if settings.smtp_tls == "ssl"
            else smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SEND_TIMEOUT_SECONDS)
        )
        with smtp:
            if settings.smtp_tls == "starttls":
                smtp.starttls(context=context)
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(
            f"SMTP {settings.smtp_host}:{settings.smtp_port} failed: {exc!r}"
        ) from None


@dataclass(frozen=True)
class Message:
    """One notification's words: an email's subject and body, a webhook's JSON."""

    subject: str
    text: str
    payload: dict[str, Any]


def compose(
    execution: DescribeJobExecution, event: NotificationEvent, base_url: str | None
) -> Message:
    """What a notification says: job, team, execution, status and reason, the failing step
    with its file, cell and line, and links to the execution and its log."""
    name = f"{execution.team}/{execution.job}"
    what = str(execution.status)
    if event == NotificationEvent.LATE and execution.scheduled_for is not None:
        minutes = (now() - execution.scheduled_for).total_seconds() / 60
        what = f"is late: still {execution.status} {minutes:.0f} minutes after it was due"
    lines = [f"{name} {what}", f"execution: {execution.id}", f"status: {execution.status}"]
    if execution.reason:
        lines.append(f"reason: {execution.reason}")
    if execution.scheduled_for:
        lines.append(f"due at: {execution.scheduled_for.isoformat()}")
    step = next((s for s in execution.steps if s.status == StepStatus.FAILED), None)
    failed_step: dict[str, Any] | None = None
    if step is not None:
        error = step.error or {}
        failed_step = {
            "position": step.position + 1,
            "name": step.name,
            "file": step.file,
            "cell_number": step.cell_number,
            "line": error.get("line"),
            "summary": error.get("summary") or step.reason,
        }
        where = step.file + (f" cell {step.cell_number}" if step.cell_number is not None else "")
        where += f", line {error['line']}" if error.get("line") else ""
        lines.append(f"failed step {step.position + 1}: {where}: {failed_step['summary'] or ''}")
    links: dict[str, str | None] = {"execution_url": None, "log_url": None, "html_url": None}
    if base_url:
        page = (
            f"{base_url.rstrip('/')}/api/v1/teams/{quote(execution.team)}/jobs/"
            f"{quote(execution.job)}/executions/{quote(execution.id)}"
        )
        links = {"execution_url": page, "log_url": page + "/logs", "html_url": page + "/html"}
        lines += [f"log: {page}/logs", f"page: {page}/html", f"api: {page}"]
    text = "\n".join(lines)
    payload = {
        "text": f"[nbplane] {text}",
        "event": event.value,
        "team": execution.team,
        "job": execution.job,
        "execution_id": execution.id,
        "status": execution.status.value,
        "reason": execution.reason,
        "scheduled_for": execution.scheduled_for.isoformat() if execution.scheduled_for else None,
        "failed_step": failed_step,
        **links,
    }
    return Message(f"[nbplane] {name} {event.value}", text, payload)


class Notifier:
    """Adds late executions' notifications to the outbox and sends what is due in it."""

    def __init__(self, service: DeploymentService) -> None:
        self.service = service
        self.deployments = service.deployments
        self.settings = service.settings

    async def run(self) -> None:
        """One pass: late executions, then every notification due."""
        await asyncio.to_thread(self.enqueue_late)
        await self.send_due()

    def enqueue_late(self) -> None:
        """Scheduled executions still active ``late_minutes`` after their due time."""
        current = now()
        targets: dict[int, list[NotificationTarget]] = {}
        for execution in self.deployments.active_executions():
            if execution.scheduled_for is None:
                continue
            if execution.job_id not in targets:
                targets[execution.job_id] = self.deployments.notification_targets(execution.job_id)
            for position, target in enumerate(targets[execution.job_id]):
                if target.late_minutes is None or not target.wants(NotificationEvent.LATE):
                    continue
                if current >= execution.scheduled_for + timedelta(minutes=target.late_minutes):
                    self.deployments.enqueue_notifications(
                        execution.id, NotificationEvent.LATE, only=position
                    )

    async def send_due(self) -> None:
        due = await asyncio.to_thread(self.deployments.due_notifications, now())
        await asyncio.gather(*(self._attempt(notification) for notification in due))

    async def _attempt(self, notification: NotificationDelivery) -> None:
        claim_until = now() + timedelta(seconds=CLAIM_SECONDS)
        if not await asyncio.to_thread(
            self.deployments.claim_notification, notification, claim_until
        ):
            return  # another replica is sending it
        attempts = notification.attempts + 1
        try:
            await self._send(notification)
        except Exception as exc:  # whatever went wrong is this attempt's outcome, recorded
            error = exc.message if isinstance(exc, NbplaneError) else repr(exc)
            final = attempts >= self.settings.notify_attempts
            delay = self.settings.notify_retry_seconds * 2 ** (attempts - 1)
            log.warning(
                "notification %s of execution %s, attempt %d failed: %s",
                notification.id,
                notification.execution_id,
                attempts,
                error,
            )
            await asyncio.to_thread(
                self.deployments.record_notification,
                notification.id,
                NotificationStatus.FAILED if final else NotificationStatus.PENDING,
                last_error=error[:ERROR_CHARACTERS],
                next_attempt_at=None if final else now() + timedelta(seconds=delay),
            )
            return
        await asyncio.to_thread(
            self.deployments.record_notification, notification.id, NotificationStatus.SENT
        )

    async def _send(self, notification: NotificationDelivery) -> None:
        record = await asyncio.to_thread(
            self.deployments.execution_record, notification.execution_id
        )
        execution = await asyncio.to_thread(
            self.deployments.execution, record.job_id, notification.execution_id
        )
        message = compose(execution, notification.event, self.service.server_url)
        if notification.sealed_url is not None:
            url = str(self.service.state.box.open(notification.sealed_url.encode())["url"])
            await post_webhook(url, message.payload, self.settings.notify_allow_private_hosts)
        else:
            await asyncio.to_thread(
                send_email, self.settings, notification.to or [], message.subject, message.text
            )
