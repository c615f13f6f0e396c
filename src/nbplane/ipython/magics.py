"""``%job``, ``%%sql`` (alias ``%%vdksql``) and ``%job_run`` for developing jobs in a notebook."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from nbplane.errors import NbplaneError
from nbplane.jobs.definition import Job, load_config
from nbplane.jobs.job_input import JobInput
from nbplane.settings import get_settings


@magics_class
class JobMagics(Magics):
    """Binds ``job_input`` in the notebook: the same object, database and state as a run."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.job_input: JobInput | None = None
        self.job_dir: Path | None = None

    @magic_arguments()
    @argument("--path", default=None, help="The job directory (default: the current one).")
    @argument("--arguments", default=None, help="Arguments as a JSON object.")
    @argument("--db", default=None, help="SQLAlchemy URL of the job's database.")
    @line_magic
    def job(self, line: str) -> None:
        """Define ``job_input`` for the job in --path, as `nbplane job run` would."""
        self.bind(line)

    def bind(self, line: str) -> JobInput:
        from nbplane.jobs.backend import StoreJobState, job_database
        from nbplane.jobs.definition import parse_arguments
        from nbplane.store import open_store

        args = _parse(self.job, line)
        directory = Path(args.path or os.getcwd()).resolve()
        if not directory.is_dir():
            raise NbplaneError(f"{directory} is not a directory", field="path")
        settings = get_settings()
        job = Job(directory=directory, config=load_config(directory), steps=(), notebooks={})
        state = StoreJobState(open_store(settings.resolved_store_url), settings)
        db_url = job_database(args.db, job, state, settings)
        if self.job_input is not None:
            self.job_input.close()
        self.job_input = JobInput(
            job,
            state=state,
            settings=settings,
            db_url=db_url,
            arguments=parse_arguments(args.arguments),
        )
        self.job_dir = directory
        assert self.shell is not None
        self.shell.user_ns["job_input"] = self.job_input
        print(
            f"job_input is ready for job {job.name} (team {job.config.team or 'default'}), "
            f"database {self.job_input!r}"
        )
        return self.job_input

    @cell_magic
    def sql(self, line: str, cell: str) -> Any:
        """Run the cell's SQL (several statements, ``:name`` bound, ``{name}`` substituted); the
        last statement's rows come back as a pandas DataFrame when pandas is installed."""
        job_input = self.job_input or self.bind("")
        return job_input.query(cell).to_frame()

    @magic_arguments()
    @argument("--path", default=None, help="The job directory (default: the one of %%job).")
    @argument("--arguments", default=None, help="Arguments as a JSON object.")
    @argument("--db", default=None, help="SQLAlchemy URL of the job's database.")
    @argument("--resume", action="store_true", help="Rerun from the changed or failed step.")
    @argument("--from-step", default=None, help="Start at this step.")
    @line_magic
    def job_run(self, line: str) -> int:
        """Run the job (saved notebooks) in a fresh process, streaming its progress here."""
        args = _parse(self.job_run, line)
        directory = Path(args.path) if args.path else (self.job_dir or Path(os.getcwd()))
        command = [sys.executable, "-m", "nbplane", "job", "run", str(directory)]
        for option, value in (
            ("--arguments", args.arguments),
            ("--db", args.db),
            ("--from-step", args.from_step),
        ):
            if value:
                command += [option, value]
        if args.resume:
            command.append("--resume")
        print("$ nbplane " + shlex.join(command[3:]), flush=True)
        environment = {**os.environ, "COLUMNS": "110", "NO_COLOR": "1"}
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
        ) as process:
            assert process.stdout is not None
            for output_line in process.stdout:
                print(output_line, end="", flush=True)
        if process.returncode:
            print(f"the job run ended with exit code {process.returncode}", file=sys.stderr)
        return process.returncode

    def flush(self, *_: Any) -> None:
        """Rows sent for ingestion in a cell are written when the cell ends, as after a step."""
        if self.job_input is not None:
            self.job_input.flush_ingestion()


def _parse(magic: Any, line: str) -> Any:
    """Parse a magic's options with shell quoting, so JSON can be quoted as in a terminal."""
    return magic.parser.parse_args(shlex.split(line))


def _show_error(
    shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None
) -> None:
    """Our errors are shown as their message, without a traceback of nbplane's code."""
    print(f"nbplane: {value}", file=sys.stderr)


def load(ipython: Any) -> None:
    magics = JobMagics(ipython)
    ipython.register_magics(magics)
    ipython.magics_manager.register_alias("vdksql", "sql", "cell")
    ipython.events.register("post_run_cell", magics.flush)
    ipython.set_custom_exc((NbplaneError,), _show_error)
