"""nbplane's Jupyter server extension: the handlers JupyterLab's nbplane menu talks to (local
job runs, login, deployments). Installing nbplane enables it through
``etc/jupyter/jupyter_server_config.d/nbplane.json``; ``jupyter server extension list`` shows it.
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from jupyter_server.serverapp import ServerApp


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    return [{"module": "nbplane.jupyter"}]


def _load_jupyter_server_extension(server_app: ServerApp) -> None:
    """Register the handlers; runs still going are stopped when the server's process exits."""
    from nbplane.jupyter.handlers import handlers
    from nbplane.jupyter.login import OAuthLogins
    from nbplane.jupyter.runs import LocalRuns

    web_app = server_app.web_app
    runs = LocalRuns(Path(server_app.root_dir))
    web_app.settings["nbplane_runs"] = runs
    web_app.settings["nbplane_oauth"] = OAuthLogins()
    web_app.add_handlers(".*$", handlers(web_app.settings["base_url"]))  # type: ignore[no-untyped-call]
    atexit.register(runs.close)
    server_app.log.info("nbplane: server extension loaded")
