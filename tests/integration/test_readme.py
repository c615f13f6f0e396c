"""Every shell snippet of README.md runs as written.

The ```sh and ```bash blocks, found by their fences (not by section), run in README order in
one bash, as a reader pastes them into one terminal: variables, the working directory and the
login carry over, and a failing command fails the test naming its README line. They run in a
copy of ``examples/`` with a home of their own, and, where the machine allows it, in a network
namespace of their own (only loopback), so the servers they start on port 5050 meet no other.
A block preceded by ``<!-- snippet: skip (reason) -->`` is not run (it needs a cluster, a
browser for OAuth...); keep those few.

A server a block starts in the background (``nbplane serve &``) keeps serving the blocks after
it, until a block starts one again: the earlier ones are stopped then, as a reader would.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
README = REPOSITORY / "README.md"
LANGUAGES = {"sh", "bash"}
FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[\w+-]*)\s*$")
SKIP = re.compile(r"^\s*<!--\s*snippet:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->\s*$")
STARTS_SERVER = re.compile(r"^\s*(\S+=\S+\s+)*nbplane serve\b.*&\s*(#.*)?$", re.MULTILINE)
TIMEOUT = 420.0

PRELUDE = """\
set -e
trap 'echo "README.md line $README_LINE: \\`$BASH_COMMAND\\` failed (exit $?)" >&2' ERR
stop_servers() {  # not README's: what a reader does before starting a server again
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_servers EXIT
"""


@dataclass(frozen=True)
class Snippet:
    line: int
    """README's line of the first command (after the opening fence)."""
    language: str
    code: str
    skip: str | None


def snippets(text: str) -> list[Snippet]:
    """The README's fenced blocks in ``LANGUAGES``, with the skip mark above each, if any."""
    found: list[Snippet] = []
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        if opening is None:
            number += 1
            continue
        indent, language = opening["indent"], opening["language"]
        end = number + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        body = [line[len(indent) :] for line in lines[number + 1 : end]]
        above = next((line for line in reversed(lines[:number]) if line.strip()), "")
        skipped = SKIP.match(above)
        if language in LANGUAGES:
            found.append(
                Snippet(number + 2, language, "\n".join(body), skipped and skipped["reason"])
            )
        number = end + 1
    return found


def script(found: list[Snippet]) -> str:
    """One bash script of the snippets to run, each line telling the trap where it is."""
    parts = [PRELUDE]
    for snippet in found:
        if snippet.skip:
            continue
        parts.append(f'echo "### README.md line {snippet.line}, at ${{SECONDS}} s"')
        if STARTS_SERVER.search(snippet.code):
            parts.append("stop_servers")
        continued = False
        for offset, line in enumerate(snippet.code.splitlines()):
            if not continued:
                parts.append(f"README_LINE={snippet.line + offset}")
            parts.append(line)
            continued = line.endswith("\\")
    return "\n".join(parts) + "\n"


def left_behind(root: Path) -> None:
    """Stop what the snippets started and left running in a session of its own (sessions'
    servers outlive nbplane's server by design): every process naming ``root``."""
    for found in psutil.process_iter(["cmdline"]):
        if str(root) in " ".join(found.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                found.kill()


def isolated_network() -> list[str]:
    """A command prefix giving the script a network namespace with only loopback, when this
    machine lets us make one (root with unshare and ip); else none, and port 5050 must be
    free."""
    if os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("ip")):
        return []
    probe = subprocess.run(
        ["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return []
    return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


def test_snippets_are_found_by_their_fences() -> None:
    text = "\n".join(
        [
            "# t",
            "```sh",
            "echo one",
            "```",
            "<!-- snippet: skip (needs a cluster) -->",
            "",
            "```bash",
            "kubectl get pods",
            "```",
            "- item",
            "  ```sh",
            "  echo two",
            "  ```",
            "```python",
            "print(3)",
            "```",
            "```",
            "nbplane job run DIR",
            "```",
        ]
    )
    assert snippets(text) == [
        Snippet(3, "sh", "echo one", None),
        Snippet(8, "bash", "kubectl get pods", "needs a cluster"),
        Snippet(12, "sh", "echo two", None),
    ]
    assert STARTS_SERVER.search("nbplane serve --role web --port 5050 &  # API")
    assert STARTS_SERVER.search("NBPLANE_X=1 nbplane serve &")
    assert not STARTS_SERVER.search("nbplane serve --help")


def test_every_readme_snippet_runs_as_written(tmp_path: Path) -> None:
    found = snippets(README.read_text(encoding="utf-8"))
    skipped = [snippet for snippet in found if snippet.skip]
    assert len(found) > 10 and len(skipped) <= 8, [(s.line, s.skip) for s in skipped]
    work = tmp_path / "work"
    shutil.copytree(REPOSITORY / "examples", work / "examples")
    (work / "run.sh").write_text(script(found), encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NBPLANE_", "PYTEST_", "COV_"))
    }
    environment.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}",
        NO_COLOR="1",
        NBPLANE_SESSION_POOL_SIZE="0",  # no Jupyter servers started ahead by each serve
        NBPLANE_SESSION_COMMAND="jupyter-server",  # sessions start faster without Lab's UI
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [*isolated_network(), "bash", str(work / "run.sh")],
        cwd=work,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"README snippets still running after {TIMEOUT:.0f} s:\n{output[-4000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        left_behind(tmp_path)
    assert process.returncode == 0, output[-6000:]
    print(f"README snippets ran in {time.monotonic() - started:.1f} s")
    print("\n".join(re.findall(r"### README\.md line \d+, at \d+ s", output)))
