"""The Jupyter server extension every local session server loads (not imported by nbplane).

A pooled server is started before anyone asks for it, with a token of the pool's and nobody's
environment. ``POST /nbplane/handout`` (authenticated with that token) makes it one session's:
its token becomes the session's, its environment (credentials) goes into ``os.environ`` so
kernels and terminals started from then on inherit it, and the login cookies signed before are
void. ``GET /nbplane/open`` is every session server's default URL: it sends the browser to the
directory the session was asked to open.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any
from urllib.parse import quote

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.serverapp import ServerApp
from jupyter_server.utils import url_path_join
from tornado import web


class _Session:
    """What the handout changed; one per server process."""

    handed_out = os.environ.pop("NBPLANE_SESSION_POOLED", "") != "1"
    """A server started for one session is that session's from the start."""
    directory: str | None = os.environ.get("NBPLANE_SESSION_DIRECTORY") or None
    """Given at handout, or by the launcher in the environment of a server started on demand."""


class HandoutHandler(APIHandler):
    """Make a pooled server one session's; once only (409 after)."""

    @web.authenticated
    def post(self) -> None:
        if _Session.handed_out:
            raise web.HTTPError(409, "this server was already handed out")
        try:
            body: dict[str, Any] = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body must be a JSON object") from None
        token, environment = body.get("token"), body.get("environment", {})
        directory = body.get("directory")
        if not isinstance(token, str) or not token:
            raise web.HTTPError(400, "token: a non-empty string is required")
        if not isinstance(environment, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in environment.items()
        ):
            raise web.HTTPError(400, "environment: an object of strings is required")
        if directory is not None and not isinstance(directory, str):
            raise web.HTTPError(400, "directory: a string is required")
        _Session.handed_out = True
        _Session.directory = directory or None
        os.environ.update(environment)
        os.environ["JUPYTER_TOKEN"] = token
        # The root symlink now points at the workspace: kernels started without a path
        # inherit this process's directory, which was the pool's empty one.
        os.chdir(self.contents_manager.root_dir)
        self.identity_provider.token = token
        # Cookies signed with the old secret (the pool's own requests) stop being valid.
        self.application.settings["cookie_secret"] = secrets.token_bytes(32)
        self.set_status(204)
        self.finish()


class OpenHandler(JupyterHandler):
    """The default URL: JupyterLab at the session's directory."""

    @web.authenticated
    def get(self) -> None:
        target = "lab"
        if _Session.directory:
            target = f"lab/tree/{quote(_Session.directory.strip('/'))}"
        self.redirect(url_path_join(self.base_url, target))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp: ServerApp) -> None:
    base_url = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(  # type: ignore[no-untyped-call]
        ".*$",
        [
            (url_path_join(base_url, "nbplane/handout"), HandoutHandler),
            (url_path_join(base_url, "nbplane/open"), OpenHandler),
        ],
    )
