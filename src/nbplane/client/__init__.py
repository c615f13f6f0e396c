"""nbplane's REST API from Python: the typed client, the saved login, deploying a job directory.

Shared by the CLI, the magics, the JupyterLab extension and a deployed job's own process.
"""

from nbplane.client._client import NbplaneClient
from nbplane.client.credentials import (
    SaveLogin,
    credentials_path,
    forget_login,
    load_login,
    normalize_url,
    save_login,
)
from nbplane.client.login import log_in, log_in_by_request, log_in_with_oauth, log_out

__all__ = [
    "NbplaneClient",
    "SaveLogin",
    "credentials_path",
    "forget_login",
    "load_login",
    "log_in",
    "log_in_by_request",
    "log_in_with_oauth",
    "log_out",
    "normalize_url",
    "save_login",
]
