"""The "browser" of the OAuth login tests, started by ``webbrowser.open`` through ``BROWSER``:
it fetches the authorize URL (the provider approves at once) and takes the redirect to the
CLI's loopback callback, spoiling one thing on the way when NBPLANE_TEST_BROWSER says so:

- ``state``: another login's state comes back;
- ``code``: a code the provider never issued comes back;
- ``challenge``: the provider is sent the challenge of another verifier, so the CLI's own
  verifier does not match it;
- ``away``: the person never logs in.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx


def replaced(url: str, **values: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(values)
    return urlunsplit(parts._replace(query=urlencode(query)))


def main(url: str) -> None:
    spoil = os.environ.get("NBPLANE_TEST_BROWSER", "")
    if spoil == "away":
        return
    if spoil == "challenge":
        digest = hashlib.sha256(b"another verifier, not the CLI's").digest()
        url = replaced(url, code_challenge=base64.urlsafe_b64encode(digest).rstrip(b"=").decode())
    approved = httpx.get(url, timeout=30)
    assert approved.status_code == 302, approved.text
    callback = approved.headers["location"]
    if spoil == "state":
        callback = replaced(callback, state="another-login")
    if spoil == "code":
        callback = replaced(callback, code="never-issued")
    httpx.get(callback, timeout=30).raise_for_status()


if __name__ == "__main__":
    main(sys.argv[1])
