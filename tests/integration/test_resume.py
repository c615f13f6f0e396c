"""``--resume`` and ``--from-step``: rerun only from what failed or changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Env, write_notebook


def steps_of(env: Env, job: Path, run_id: int) -> list[dict[str, Any]]:
    result = env.run("job", "show-run", str(job), str(run_id), "--output", "json")
    record = json.loads(result.stdout)
    return list(record["steps"])


def statuses(env: Env, job: Path, run_id: int) -> list[str]:
    return [step["status"] for step in steps_of(env, job, run_id)]


def make_job(tmp_path: Path) -> Path:
    job = tmp_path / "etl"
    job.mkdir()
    write_notebook(
        job / "10_extract.ipynb",
        [
            "import os\nrows = [1, 2, 3]\nprint('extracting')",
            "if os.path.exists('fail.flag'):\n    raise RuntimeError('source not ready')\n"
            "total = sum(rows)\nprint('total', total)",
        ],
    )
    (job / "20_load.py").write_text(
        "def run(job_input):\n    print('loading', job_input.get_arguments().get('day'))\n"
    )
    write_notebook(job / "30_report.ipynb", ["print('report v1')"])
    return job


def test_resume_after_a_failure_restores_the_namespace(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    (job / "fail.flag").write_text("")
    failed = env.run("job", "run", str(job), check=1)
    assert "source not ready" in failed.stdout
    (job / "fail.flag").unlink()
    resumed = env.run("job", "run", str(job), "--resume")
    assert "step 2 failed in run 1" in resumed.stdout
    assert "extracting" not in resumed.stdout, "the step before the failure is skipped"
    assert "total 6" in resumed.stdout, "rows comes back from the checkpoint"
    assert statuses(env, job, 2) == ["skipped", "succeeded", "succeeded", "succeeded"]
    assert steps_of(env, job, 2)[0]["reason"] == "unchanged since run 1"


def test_resume_reruns_only_the_edited_last_step(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    env.run("job", "run", str(job))
    write_notebook(job / "30_report.ipynb", ["print('report v2')"])
    resumed = env.run("job", "run", str(job), "--resume")
    assert "its code changed since run 1" in resumed.stdout
    assert "report v2" in resumed.stdout and "loading" not in resumed.stdout
    assert statuses(env, job, 2) == ["skipped", "skipped", "skipped", "succeeded"]


def test_editing_an_earlier_step_reruns_it_and_everything_after(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    env.run("job", "run", str(job))
    (job / "20_load.py").write_text(
        "def run(job_input):\n    print('loading v2', job_input.get_arguments().get('day'))\n"
    )
    resumed = env.run("job", "run", str(job), "--resume")
    assert "loading v2" in resumed.stdout and "report v1" in resumed.stdout
    assert statuses(env, job, 2) == ["skipped", "skipped", "succeeded", "succeeded"]


def test_changed_arguments_rerun_everything(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    env.run("job", "run", str(job), "--arguments", '{"day": "mon"}')
    resumed = env.run("job", "run", str(job), "--resume", "--arguments", '{"day": "tue"}')
    assert "loading tue" in resumed.stdout and "extracting" in resumed.stdout
    assert statuses(env, job, 2) == ["succeeded"] * 4


def test_nothing_changed_skips_every_step(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    env.run("job", "run", str(job))
    resumed = env.run("job", "run", str(job), "--resume")
    assert "nothing changed since run 1" in resumed.stdout
    assert statuses(env, job, 2) == ["skipped"] * 4


def test_resume_without_history_runs_everything(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    result = env.run("job", "run", str(job), "--resume")
    assert "no earlier run" in result.stdout
    assert statuses(env, job, 1) == ["succeeded"] * 4


def test_unpicklable_value_goes_back_to_the_step_that_defines_it(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "conn"
    job.mkdir()
    cells = [
        "import sqlite3\nconn = sqlite3.connect(':memory:')\nprint('connected')",
        "n = 5\nprint('n set')",
        "print('uses', conn.execute('select 1').fetchone(), n)",
    ]
    write_notebook(job / "10_a.ipynb", cells)
    env.run("job", "run", str(job))
    write_notebook(job / "10_a.ipynb", [*cells[:2], cells[2].replace("uses", "USES")])
    resumed = env.run("job", "run", str(job), "--resume")
    assert "conn (sqlite3.Connection) cannot be checkpointed" in resumed.stdout
    assert "going back to step 1" in resumed.stdout
    assert "connected" in resumed.stdout and "USES (1,) 5" in resumed.stdout


def test_unpicklable_value_not_used_later_does_not_move_the_start(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "conn2"
    job.mkdir()
    cells = [
        "import threading\nlock = threading.Lock()\nprint('made lock')",
        "print('value', 41 + 1)",
    ]
    write_notebook(job / "10_a.ipynb", cells)
    env.run("job", "run", str(job))
    write_notebook(job / "10_a.ipynb", [cells[0], "print('value', 40 + 2)"])
    resumed = env.run("job", "run", str(job), "--resume")
    assert "made lock" not in resumed.stdout and "value 42" in resumed.stdout


def test_from_step_forces_the_start(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    env.run("job", "run", str(job))
    forced = env.run("job", "run", str(job), "--from-step", "20_load.py")
    assert "as asked by --from-step" in forced.stdout
    assert "extracting" not in forced.stdout and "loading" in forced.stdout
    assert statuses(env, job, 2) == ["skipped", "skipped", "succeeded", "succeeded"]
    by_cell = env.run("job", "run", str(job), "--from-step", "10_extract.ipynb#2")
    assert "total 6" in by_cell.stdout


def test_from_step_unknown_name_is_a_clear_error(env: Env, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    result = env.run("job", "run", str(job), "--from-step", "nope", check=2)
    assert "no step named 'nope'" in result.stderr
    assert "20_load.py" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def make_days_job(parent: Path) -> Path:
    """A job whose load step leaves state behind (``state.txt``) that its report reads."""
    job = parent / "etl"
    job.mkdir(parents=True)
    write_notebook(
        job / "10_extract.ipynb",
        [
            "days = job_input.get_arguments()['days']\nprint('extract', days)",
            "import os, signal\nif os.path.exists('kill.flag'):\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\nif os.path.exists('fail.flag'):\n"
            "    raise RuntimeError('source not ready')\nprint('checked', days)",
        ],
    )
    (job / "20_load.py").write_text(
        "from pathlib import Path\n\ndef run(job_input):\n"
        "    Path('state.txt').write_text(str(job_input.get_arguments()['days']))\n"
    )
    write_notebook(job / "30_report.ipynb", ["print('report v1 of', open('state.txt').read())"])
    return job


def days(env: Env, job: Path, value: int, *extra: str, check: int | None = 0) -> str:
    arguments = json.dumps({"days": value})
    return env.run("job", "run", str(job), "--arguments", arguments, *extra, check=check).stdout


def reasons(env: Env, job: Path, run: int) -> list[str | None]:
    return [step["reason"] for step in steps_of(env, job, run)]


def test_switching_arguments_back_and_forth_reruns_what_the_last_run_changed(
    env: Env, tmp_path: Path
) -> None:
    job = make_days_job(tmp_path)
    days(env, job, 7)
    days(env, job, 3)
    resumed = days(env, job, 7, "--resume")
    assert "resuming at step 1 (10_extract.ipynb#1): the arguments changed since run 2" in resumed
    assert statuses(env, job, 3) == ["succeeded"] * 4
    assert reasons(env, job, 3)[0] == "the arguments changed since run 2"
    assert "report v1 of 7" in resumed

    again = days(env, job, 7, "--resume")
    assert "nothing changed since run 3: every step is up to date" in again
    assert statuses(env, job, 4) == ["skipped"] * 4
    assert reasons(env, job, 4) == ["unchanged since run 3"] * 4

    write_notebook(job / "30_report.ipynb", ["print('report v2 of', open('state.txt').read())"])
    edited = days(env, job, 7, "--resume")
    # run 4 skipped the report: its latest execution is run 3's
    assert "resuming at step 4 (30_report.ipynb#1): its code changed since run 3" in edited
    assert "report v2 of 7" in edited and "run 5 of etl succeeded" in edited
    assert statuses(env, job, 5) == ["skipped", "skipped", "skipped", "succeeded"]
    assert reasons(env, job, 5)[3] == "its code changed since run 3"


def test_a_failed_or_killed_run_after_a_success_is_what_resume_compares_with(
    env: Env, tmp_path: Path
) -> None:
    job = make_days_job(tmp_path)
    days(env, job, 7)
    (job / "fail.flag").write_text("")
    days(env, job, 3, check=1)  # step 1 ran with 3 days, step 2 failed
    (job / "fail.flag").unlink()
    resumed = days(env, job, 7, "--resume")
    assert "resuming at step 1 (10_extract.ipynb#1): the arguments changed since run 2" in resumed
    assert statuses(env, job, 3) == ["succeeded"] * 4

    (job / "kill.flag").write_text("")
    killed = env.run("job", "run", str(job), "--arguments", '{"days": 7}', check=None)
    assert killed.returncode != 0  # the process died in step 2: no record of it
    (job / "kill.flag").unlink()
    after_kill = days(env, job, 7, "--resume")
    assert (
        "resuming at step 2 (10_extract.ipynb#2): step 2 failed in run 4 "
        "(the run ended while it ran)" in after_kill
    )
    assert statuses(env, job, 5) == ["skipped", "succeeded", "succeeded", "succeeded"]
    assert reasons(env, job, 5)[:2] == [
        "unchanged since run 4",
        "step 2 failed in run 4 (the run ended while it ran)",
    ]
    assert "checked 7" in after_kill, "days comes back from run 4's checkpoint"


def test_a_from_step_run_in_between_counts_for_the_steps_it_ran(env: Env, tmp_path: Path) -> None:
    job = make_days_job(tmp_path)
    days(env, job, 7)
    forced = days(env, job, 3, "--from-step", "20_load.py")
    assert "report v1 of 3" in forced
    assert reasons(env, job, 2)[0] == (
        "skipped by --from-step, though the arguments changed since run 1"
    )
    resumed = days(env, job, 7, "--resume")
    assert "resuming at step 3 (20_load.py): the arguments changed since run 2" in resumed
    assert statuses(env, job, 3) == ["skipped", "skipped", "succeeded", "succeeded"]
    assert "report v1 of 7" in resumed


def test_two_jobs_sharing_a_home_resume_from_their_own_runs(env: Env, tmp_path: Path) -> None:
    first, second = make_days_job(tmp_path / "a"), make_days_job(tmp_path / "b")
    days(env, first, 7)
    assert "run 1 of etl succeeded" in days(env, second, 3)
    resumed = days(env, first, 7, "--resume")
    assert "nothing changed since run 1" in resumed and "run 2 of etl" in resumed
    other = days(env, second, 7, "--resume")
    assert "the arguments changed since run 1" in other and "report v1 of 7" in other


def test_a_step_interrupted_in_process_counts_as_failed(tmp_path: Path) -> None:
    """Ctrl-C in a step: the run is cancelled and that step recorded failed, so resume reruns
    it even though an earlier run succeeded with the same code and arguments."""
    from nbplane.jobs.runner import run_job
    from nbplane.settings import Settings

    job = tmp_path / "interrupted"
    job.mkdir()
    write_notebook(job / "10_first.ipynb", ["print('first')"])
    (job / "20_second.py").write_text(
        "import os\n\ndef run(job_input):\n"
        "    if os.path.exists('stop.flag'):\n        raise KeyboardInterrupt\n"
    )
    settings = Settings(home=tmp_path / "home")
    assert run_job(job, settings=settings).status == "succeeded"
    (job / "stop.flag").write_text("")
    cancelled = run_job(job, settings=settings)
    assert cancelled.status == "cancelled" and cancelled.number == 2
    assert [step.status for step in cancelled.steps] == ["succeeded", "failed"]
    assert "did not finish: interrupted by the user" in (cancelled.steps[1].error or {})["message"]
    (job / "stop.flag").unlink()
    resumed = run_job(job, settings=settings, resume=True)
    assert resumed.plan == ["resuming at step 2 (20_second.py): step 2 failed in run 2"]
    assert [step.status for step in resumed.steps] == ["skipped", "succeeded"]


def test_a_step_that_exits_the_process_fails_its_run(tmp_path: Path) -> None:
    """SystemExit ends the run as failed, never as a success whose later steps did not run."""
    from nbplane.jobs.runner import run_job
    from nbplane.settings import Settings
    from nbplane.store import open_store

    job = tmp_path / "exits"
    job.mkdir()
    (job / "10_exit.py").write_text("import sys\n\ndef run(job_input):\n    sys.exit(0)\n")
    (job / "20_after.py").write_text("def run(job_input):\n    pass\n")
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(SystemExit):
        run_job(job, settings=settings)
    store = open_store(settings.resolved_store_url)
    try:
        (record,) = store.list_runs(str(job.resolve()))
    finally:
        store.close()
    assert record.status == "failed" and "SystemExit" in (record.error or {})["message"]
    assert [step.status for step in record.steps] == ["failed", "not run"]
