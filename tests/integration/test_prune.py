"""``nbplane job prune``: what a dry run shows, and a real prune after which ``--resume`` still
restores the namespace from the checkpoint it needs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Env, write_notebook


def test_prune_keeps_what_resume_needs(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "etl"
    job.mkdir()
    write_notebook(
        job / "10_a.ipynb", ["rows = [1, 2, 3]\nprint('extracting')", "print('total', sum(rows))"]
    )
    (job / "config.ini").write_text("[owner]\nteam = sales\n\n[retention]\nkeep_runs = 1\n")
    for _ in range(2):
        env.run("job", "run", str(job))

    # the options win over config.ini: every run kept, outputs only of the newest
    dry = env.run("job", "prune", str(job), "--dry-run", "--keep-runs", "0", "--keep-outputs", "1")
    assert "would remove (--dry-run: nothing was)" in dry.stderr  # the title, piped
    [row] = [line.split("\t")[1:] for line in dry.stdout.splitlines() if "etl" in line]
    # runs, steps, checkpoints (run 1's: run 2 ran both steps since), notebooks, outputs
    assert [cell.strip() for cell in row] == ["0", "0", "2", "1", "2"]

    [pruned] = json.loads(env.run("job", "prune", str(job), "--output", "json").stdout)
    assert pruned["dry_run"] is False and pruned["job"] == str(job.resolve())
    # config.ini keeps 1 run; all of run 1 is still there: the dry run removed nothing
    assert (len(pruned["runs"]), pruned["steps"], pruned["checkpoints"]) == (1, 2, 2)
    assert pruned["notebooks"] == 1

    write_notebook(
        job / "10_a.ipynb",
        ["rows = [1, 2, 3]\nprint('extracting')", "print('total v2', sum(rows))"],
    )
    resumed = env.run("job", "run", str(job), "--resume")
    assert "its code changed" in resumed.stdout
    assert "extracting" not in resumed.stdout, "the first step is skipped"
    assert "total v2 6" in resumed.stdout, "rows comes back from the kept checkpoint"

    every = json.loads(env.run("job", "prune", "--all", "--dry-run", "--output", "json").stdout)
    assert [found["job"] for found in every] == [str(job.resolve())]
    refused = env.run("job", "prune", check=2)
    assert "name a job directory, or --all" in refused.stderr
