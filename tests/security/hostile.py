"""The hostile job step the security tests deploy on each executor: every attack it tries is
recorded as succeeded or failed, and ``attempts_that_succeeded`` reads them back from its log."""

from __future__ import annotations

import hashlib
import json

HOSTILE = r"""
import json, os, pathlib, httpx
facts = job_input.get_arguments()
results = {}

def attempt(name, action):
    try:
        results[name] = "succeeded: " + repr(action())[:120]
    except Exception as exc:
        results[name] = "failed: " + type(exc).__name__

url, token = os.environ["NBPLANE_URL"], os.environ["NBPLANE_EXECUTION_TOKEN"]

def api(method, path, **kwargs):
    answer = httpx.request(method, url + path, headers={"Authorization": "Bearer " + token},
                           timeout=30, **kwargs)
    if answer.status_code >= 400:
        raise PermissionError(answer.status_code)
    return answer.text

unexpected = sorted(
    k for k in os.environ
    if k.startswith("NBPLANE_") and k not in ("NBPLANE_URL", "NBPLANE_EXECUTION_TOKEN",
                                              "NBPLANE_EXECUTION_ID", "NBPLANE_WORK_DIR",
                                              "NBPLANE_HOME")
    or any(word in k for word in ("SECRET", "PASSWORD", "KUBERNETES_SERVICE")))
if unexpected:
    results["settings in the environment"] = "succeeded: " + ", ".join(unexpected)
if facts.get("home"):  # the executor runs the job on the server's machine
    home = pathlib.Path(facts["home"])
    attempt("read the key file", lambda: (home / "secret.key").read_bytes())
    attempt("list NBPLANE_HOME", lambda: os.listdir(home))
    attempt("read the store", lambda: pathlib.Path(facts["store"]).read_bytes()[:16])
    attempt("read the server's environment",
            lambda: pathlib.Path(f"/proc/{facts['server_pid']}/environ").read_bytes())
attempt("read a service account token", lambda: pathlib.Path(
    "/var/run/secrets/kubernetes.io/serviceaccount/token").read_bytes())
attempt("GET /api/v1/me", lambda: api("GET", "/api/v1/me"))
attempt("read another team's job",
        lambda: api("GET", "/api/v1/teams/sales/jobs/daily/secrets"))
attempt("list users", lambda: api("GET", "/api/v1/users"))
attempt("list connections", lambda: api("GET", "/api/v1/connections"))
attempt("finish alice's run", lambda: api(
    "POST", f"/api/v1/execution/runs/{facts['alice_run']}/finish", json={"status": "failed"}))
attempt("add a step to alice's run", lambda: api(
    "POST", f"/api/v1/execution/runs/{facts['alice_run']}/steps",
    json={"position": 9, "name": "x", "kind": "python", "file": "x", "status": "failed",
          "code_hash": "x", "chain_hash": "x"}))
attempt("another team's connection", lambda: job_input.get_connection("warehouse"))
import hashlib
if hashlib.sha256(job_input.get_secret("mine", "").encode()).hexdigest() != facts["expected"]:
    results["read its own secret"] = "succeeded: wrongly, it could not"
print("RESULTS " + json.dumps(results))
print("CREDENTIAL " + token)
"""


def attempts_that_succeeded(log: str) -> dict[str, str]:
    """The attacks of the hostile step (its log) that succeeded; the step must have run."""
    assert "RESULTS " in log, log
    results: dict[str, str] = json.loads(log.split("RESULTS ", 1)[1].splitlines()[0])
    return {name: value for name, value in results.items() if value.startswith("succeeded")}


def digest(secret: str) -> str:
    """What the hostile step compares its own secret with (the secret itself would be stored
    with the execution's arguments)."""
    return hashlib.sha256(secret.encode()).hexdigest()
