"""``job_input``: every IJobInput method exercised through real ``nbplane job run`` calls."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.conftest import Env, write_notebook


def step_output(stdout: str) -> list[str]:
    """The lines steps printed, as the CLI streams them (``  | text``)."""
    return [line.split("| ", 1)[1] for line in stdout.splitlines() if line.startswith("  | ")]


def runs_json(env: Env, job: Path) -> list[dict[str, Any]]:
    return json.loads(env.run("job", "runs", str(job), "--output", "json").stdout)


def show_run_json(env: Env, job: Path, run_id: int) -> dict[str, Any]:
    return json.loads(env.run("job", "show-run", str(job), str(run_id), "--output", "json").stdout)


def store_url(env: Env) -> str:
    return env.db_url if env.db_url.startswith("postgresql") else f"sqlite:///{env.home}/nbplane.db"


def store_rows(env: Env, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(store_url(env))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params).fetchall()]
    finally:
        engine.dispose()


def table_names(url: str) -> set[str]:
    from sqlalchemy import inspect

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


# properties


def test_properties_persist_across_runs(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "props"
    job.mkdir()
    write_notebook(
        job / "10_props.ipynb",
        [
            "before = job_input.get_all_properties()\n"
            "print('before', sorted(before.items()))\n"
            "count = job_input.get_property('count', 0)\n"
            "job_input.set_all_properties({**before, 'count': count + 1, 'who': 'ann'})",
            "print('count now', job_input.get_property('count'),\n"
            "      job_input.get_property('absent', 'dflt'))",
        ],
    )
    first = step_output(env.run("job", "run", str(job)).stdout)
    assert first == ["before []", "count now 1 dflt"]
    second = step_output(env.run("job", "run", str(job)).stdout)
    assert second == ["before [('count', 1), ('who', 'ann')]", "count now 2 dflt"]


def test_properties_are_kept_per_team_and_job_name(env: Env, tmp_path: Path) -> None:
    cells = [
        "print('seen', job_input.get_property('mark'))\n"
        "job_input.set_all_properties({'mark': job_input.get_arguments()['mark']})"
    ]
    first, other = tmp_path / "a" / "same", tmp_path / "b" / "same"
    for job, team in ((first, "red"), (other, "blue")):
        job.mkdir(parents=True)
        (job / "config.ini").write_text(f"[owner]\nteam = {team}\n", encoding="utf-8")
        write_notebook(job / "10.ipynb", cells)
    assert step_output(
        env.run("job", "run", str(first), "--arguments", '{"mark": "red-1"}').stdout
    ) == ["seen None"]
    # same job name, another team: its own properties
    assert step_output(
        env.run("job", "run", str(other), "--arguments", '{"mark": "blue-1"}').stdout
    ) == ["seen None"]
    assert step_output(
        env.run("job", "run", str(first), "--arguments", '{"mark": "red-2"}').stdout
    ) == ["seen red-1"]


def test_set_all_properties_rejects_a_non_dict(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "badprops"
    job.mkdir()
    write_notebook(job / "10.ipynb", ["job_input.set_all_properties(['a'])"])
    result = env.run("job", "run", str(job), check=1)
    assert "set_all_properties: expected a dict, got list" in result.stdout


# secrets


def test_secrets_persist_encrypted_and_are_redacted(env: Env, tmp_path: Path) -> None:
    value = "tok-SEKRIT-5f3a9c"
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    job = tmp_path / "secretive"
    job.mkdir()
    write_notebook(
        job / "10_secrets.ipynb",
        [
            "import hashlib, os\n"
            "before = job_input.get_all_secrets()\n"
            "print('keys before', sorted(before))\n"
            "if not before:\n"
            "    job_input.set_all_secrets({'api_token': os.environ['NBPLANE_T_TOKEN']})",
            "token = job_input.get_secret('api_token')\n"
            "print('token is', token)\n"
            "print('digest', hashlib.sha256(token.encode()).hexdigest()[:16])\n"
            "print('missing is', job_input.get_secret('missing', 'fallback'))",
            "if job_input.get_arguments().get('explode'):\n"
            "    raise RuntimeError('token was ' + token)",
        ],
    )

    env.variables["NBPLANE_T_TOKEN"] = value
    first = env.run("job", "run", str(job))
    assert value not in first.stdout + first.stderr
    assert step_output(first.stdout) == [
        "keys before []",
        "token is [secret]",
        f"digest {digest}",
        "missing is fallback",
    ]

    # stored, but encrypted with the key in NBPLANE_HOME
    (blob,) = [
        bytes(row[0])
        for row in store_rows(env, "SELECT secrets FROM job_state")
        if row[0] is not None
    ]
    assert value.encode() not in blob
    assert b"api_token" not in blob
    from cryptography.fernet import Fernet

    key_file = env.home / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert json.loads(Fernet(key_file.read_bytes().strip()).decrypt(blob)) == {"api_token": value}

    # a later run, without the value in its environment, reads the stored secret
    del env.variables["NBPLANE_T_TOKEN"]
    second = env.run("job", "run", str(job))
    assert step_output(second.stdout) == [
        "keys before ['api_token']",
        "token is [secret]",
        f"digest {digest}",
        "missing is fallback",
    ]

    # an error message with the secret in it is redacted on screen and in the record
    failed = env.run("job", "run", str(job), "--arguments", '{"explode": true}', check=1)
    assert "RuntimeError: token was [secret]" in failed.stdout
    assert value not in failed.stdout + failed.stderr
    run_id = runs_json(env, job)[0]["number"]
    shown = env.run("job", "show-run", str(job), str(run_id), "--output", "json").stdout
    assert value not in shown
    record = json.loads(shown)
    assert record["status"] == "failed"
    assert "token was [secret]" in record["error"]["message"]
    assert "token was [secret]" in record["error"]["traceback"]
    page = tmp_path / "run.html"
    env.run("job", "show-run", str(job), str(run_id), "--html", str(page))
    html = page.read_text(encoding="utf-8")
    assert "token is [secret]" in html
    assert value not in html
    # nothing nbplane recorded about the runs holds the value
    recorded = store_rows(env, "SELECT outputs, error FROM job_run_steps")
    recorded += store_rows(env, "SELECT error, arguments FROM job_runs")
    recorded += store_rows(env, "SELECT content FROM job_run_notebooks")
    recorded += store_rows(env, "SELECT properties FROM job_state")
    assert recorded and value not in repr(recorded)


def test_a_secret_in_a_failing_query_of_a_py_step_is_not_recorded(env: Env, tmp_path: Path) -> None:
    value = "pw-SEKRIT-81d0"
    job = tmp_path / "leaky"
    job.mkdir()
    (job / "10_query.py").write_text(
        "import os\n"
        "def run(job_input):\n"
        "    job_input.set_all_secrets({'pw': os.environ['NBPLANE_T_PW']})\n"
        "    pw = job_input.get_secret('pw')\n"
        "    job_input.execute_query(f\"SELECT '{pw}' AS t FROM no_such_table_q\")\n",
        encoding="utf-8",
    )
    env.variables["NBPLANE_T_PW"] = value
    result = env.run("job", "run", str(job), check=1)
    assert "no_such_table_q" in result.stdout
    assert value not in result.stdout + result.stderr
    shown = env.run(
        "job", "show-run", str(job), str(runs_json(env, job)[0]["number"]), "--output", "json"
    ).stdout
    assert "no_such_table_q" in shown
    assert value not in shown


def test_secrets_from_another_key_fail_clearly(env: Env, tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    job = tmp_path / "rekeyed"
    job.mkdir()
    write_notebook(
        job / "10.ipynb",
        [
            "import os\n"
            "if 'NBPLANE_T_PW' in os.environ:\n"
            "    job_input.set_all_secrets({'pw': os.environ['NBPLANE_T_PW']})\n"
            "print('pw', job_input.get_secret('pw'))",
        ],
    )
    env.variables["NBPLANE_T_PW"] = "hunter22"
    assert "  | pw [secret]" in env.run("job", "run", str(job)).stdout
    del env.variables["NBPLANE_T_PW"]
    env.variables["NBPLANE_SECRET_KEY"] = Fernet.generate_key().decode()
    result = env.run("job", "run", str(job), check=1)
    assert "encrypted with another key" in result.stdout
    assert "hunter22" not in result.stdout


# ingestion


def test_ingestion_creates_the_table_and_adds_new_columns(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "ingest"
    job.mkdir()
    write_notebook(
        job / "10_ingest.ipynb",
        [
            "job_input.send_object_for_ingestion(\n"
            "    {'id': 1, 'name': 'a'}, destination_table='events')",
            "job_input.send_object_for_ingestion(\n"
            "    payload={'id': 2, 'name': 'b', 'score': 1.5, 'meta': {'k': [1, 2]}},\n"
            "    destination_table='events', method='ignored', target='ignored',\n"
            "    collection_id='c1')",
        ],
    )
    env.run("job", "run", str(job))
    assert sorted(env.query("SELECT id, name, score, meta FROM events")) == [
        (1, "a", None, None),
        (2, "b", 1.5, '{"k": [1, 2]}'),
    ]

    # another run, another process: the existing table is widened again
    later = tmp_path / "later"
    later.mkdir()
    (later / "10_more.py").write_text(
        "def run(job_input):\n"
        "    job_input.send_object_for_ingestion({'id': 3, 'late': 'yes'}, 'events')\n"
        "    job_input.send_object_for_ingestion({'id': 4, 'name': 'd', 'late': 'no'},\n"
        "                                        destination_table='events')\n",
        encoding="utf-8",
    )
    env.run("job", "run", str(later))
    assert sorted(env.query("SELECT id, name, score, late FROM events")) == [
        (1, "a", None, None),
        (2, "b", 1.5, None),
        (3, None, None, "yes"),
        (4, "d", None, "no"),
    ]


def test_tabular_ingestion_with_column_names_and_a_dataframe(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "tabular"
    job.mkdir()
    write_notebook(
        job / "10_tab.ipynb",
        [
            "job_input.send_tabular_data_for_ingestion(\n"
            "    [(1, 'x'), (2, 'y')], column_names=['n', 'label'], destination_table='tab')",
            "import pandas as pd\n"
            "frame = pd.DataFrame({'n': [3, 4], 'label': ['z', 'w'], 'weight': [0.25, 0.5]})\n"
            "job_input.send_tabular_data_for_ingestion(frame, list(frame.columns), 'tab')",
        ],
    )
    env.run("job", "run", str(job))
    assert sorted(env.query("SELECT n, label, weight FROM tab")) == [
        (1, "x", None),
        (2, "y", None),
        (3, "z", 0.25),
        (4, "w", 0.5),
    ]


def test_dataframe_missing_values_land_as_null(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "gaps"
    job.mkdir()
    write_notebook(
        job / "10.ipynb",
        [
            "import pandas as pd\n"
            "frame = pd.DataFrame({'k': [1, 2], 'f': [1.5, None], 's': ['a', None]})\n"
            "job_input.send_tabular_data_for_ingestion(frame, list(frame.columns), 'gaps')",
        ],
    )
    env.run("job", "run", str(job))
    assert sorted(env.query("SELECT k, f, s FROM gaps")) == [(1, 1.5, "a"), (2, None, None)]
    assert env.query("SELECT k FROM gaps WHERE f IS NULL") == [(2,)]


def test_dataframe_with_a_nullable_integer_column(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "nullable"
    job.mkdir()
    write_notebook(
        job / "10.ipynb",
        [
            "import pandas as pd\n"
            "frame = pd.DataFrame({'k': [1, 2], 'n': pd.array([7, None], dtype='Int64')})\n"
            "job_input.send_tabular_data_for_ingestion(frame, list(frame.columns), 'nullable')",
        ],
    )
    env.run("job", "run", str(job))
    assert sorted(env.query("SELECT k, n FROM nullable")) == [(1, 7), (2, None)]


def test_decimal_values_are_ingested(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "money"
    job.mkdir()
    write_notebook(
        job / "10.ipynb",
        [
            "import decimal\n"
            "job_input.send_object_for_ingestion(\n"
            "    {'id': 1, 'amount': decimal.Decimal('12.50')}, destination_table='money')",
        ],
    )
    env.run("job", "run", str(job))
    ((ident, amount),) = env.query("SELECT id, amount FROM money")
    assert (ident, float(amount)) == (1, 12.5)


def test_dataframe_with_a_timestamp_column(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "stamped"
    job.mkdir()
    write_notebook(
        job / "10.ipynb",
        [
            "import pandas as pd\n"
            "frame = pd.DataFrame({'id': [1], 'at': [pd.Timestamp('2024-01-02 03:04:05')]})\n"
            "job_input.send_tabular_data_for_ingestion(frame, list(frame.columns), 'stamped')",
        ],
    )
    env.run("job", "run", str(job))
    ((ident, at),) = env.query("SELECT id, at FROM stamped")
    assert ident == 1
    assert str(at).startswith("2024-01-02 03:04:05")


def test_ingestion_recreates_a_table_a_previous_step_dropped(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "rebuild"
    job.mkdir()
    write_notebook(
        job / "10.ipynb",
        [
            "job_input.send_object_for_ingestion({'id': 1}, destination_table='staging')",
            "%%sql\nDROP TABLE staging",
            "job_input.send_object_for_ingestion({'id': 2, 'extra': 'e'}, 'staging')",
        ],
    )
    env.run("job", "run", str(job))
    assert env.query("SELECT id, extra FROM staging") == [(2, "e")]


def test_tabular_ingestion_rejects_a_short_row(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "shortrow"
    job.mkdir()
    write_notebook(
        job / "10.ipynb",
        [
            "job_input.send_tabular_data_for_ingestion([(1, 'a'), (2,)], ['n', 'label'], 'tab')",
        ],
    )
    result = env.run("job", "run", str(job), check=1)
    assert "row 2 has 1 values for 2 columns" in result.stdout
    assert "tab" not in table_names(env.db_url)


def test_ingestion_in_batches_writes_every_row(env: Env, tmp_path: Path) -> None:
    env.variables["NBPLANE_INGEST_BATCH_SIZE"] = "2"
    job = tmp_path / "batches"
    job.mkdir()
    write_notebook(
        job / "10_batches.ipynb",
        [
            "for i in range(3):\n"
            "    job_input.send_object_for_ingestion({'i': i}, destination_table='nums')\n"
            "print('mid-step', job_input.execute_query('SELECT count(*) FROM nums'))\n"
            "for i in range(3, 5):\n"
            "    job_input.send_object_for_ingestion({'i': i}, destination_table='nums')",
            "job_input.send_tabular_data_for_ingestion(\n"
            "    [(i,) for i in range(5, 10)], ['i'], 'nums')",
        ],
    )
    result = env.run("job", "run", str(job))
    # two full batches of 2 were written while the step was still sending
    assert "mid-step [(2,)]" in step_output(result.stdout)
    assert sorted(row[0] for row in env.query("SELECT i FROM nums")) == list(range(10))


def test_ingested_rows_are_visible_to_the_next_step(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "visible"
    job.mkdir()
    write_notebook(
        job / "10_send.ipynb",
        [
            "for name in ('p', 'q', 'r'):\n"
            "    job_input.send_object_for_ingestion({'name': name}, destination_table='staged')",
            "print('next step', job_input.execute_query('SELECT count(*) FROM staged'))",
        ],
    )
    (job / "20_copy.sql").write_text(
        "CREATE TABLE copied AS SELECT name FROM staged WHERE name <> 'q'", encoding="utf-8"
    )
    result = env.run("job", "run", str(job))
    assert "next step [(3,)]" in step_output(result.stdout)
    assert sorted(env.query("SELECT name FROM copied")) == [("p",), ("r",)]


def test_a_payload_that_is_not_a_dict_fails_the_step(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "badpayload"
    job.mkdir()
    write_notebook(
        job / "10_bad.ipynb",
        [
            "job_input.send_object_for_ingestion(['x', 1], destination_table='t')",
            "print('after the bad step')",
        ],
    )
    result = env.run("job", "run", str(job), check=1)
    assert "send_object_for_ingestion: payload must be a dict, got list" in result.stdout
    assert "after the bad step" not in result.stdout
    record = show_run_json(env, job, runs_json(env, job)[0]["number"])
    assert [s["status"] for s in record["steps"]] == ["failed", "not run"]
    assert "payload must be a dict, got list" in record["error"]["message"]
    assert "10_bad.ipynb cell 1" in record["error"]["message"]


def test_ingestion_without_a_destination_table_fails(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "notable"
    job.mkdir()
    write_notebook(job / "10.ipynb", ["job_input.send_object_for_ingestion({'x': 1})"])
    result = env.run("job", "run", str(job), check=1)
    assert "destination_table is required" in result.stdout


# queries and connections


def test_execute_query_runs_several_statements_and_substitutes(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "subst"
    job.mkdir()
    write_notebook(
        job / "10_q.ipynb",
        [
            "job_input.set_all_properties({'p': 'from-prop', 'shared': 'prop',\n"
            "                              'pa__job_name': 'fake-name'})",
            "rows = job_input.execute_query('''\n"
            "    CREATE TABLE m (x INTEGER);\n"
            "    INSERT INTO m VALUES ({first});\n"
            "    INSERT INTO m VALUES (2);\n"
            "    SELECT x FROM m ORDER BY x''')\n"
            "print('rows', rows)\n"
            "print('no rows', job_input.execute_query('INSERT INTO m VALUES (3)'))",
            "%%sql\n"
            "CREATE TABLE subst AS SELECT '{p}' AS p, '{shared}' AS shared,\n"
            "  '{pa__job_name}' AS job, '{unknown}' AS unknown",
        ],
    )
    result = env.run("job", "run", str(job), "--arguments", '{"first": 1, "shared": "arg"}')
    out = step_output(result.stdout)
    assert "rows [(1,), (2,)]" in out
    assert "no rows []" in out
    # arguments win over execution properties, which win over properties
    assert env.query("SELECT p, shared, job, unknown FROM subst") == [
        ("from-prop", "arg", "subst", "{unknown}")
    ]
    assert sorted(env.query("SELECT x FROM m")) == [(1,), (2,), (3,)]


def test_failing_sql_in_execute_query_names_the_statement(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "badsql"
    job.mkdir()
    write_notebook(job / "10.ipynb", ["job_input.execute_query('SELECT * FROM no_such_table')"])
    result = env.run("job", "run", str(job), check=1)
    assert "no_such_table" in result.stdout
    assert "QueryError" in result.stdout


def test_managed_connection_works_with_a_cursor(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "conn"
    job.mkdir()
    (job / "10_conn.py").write_text(
        "def run(job_input):\n"
        "    connection = job_input.get_managed_connection()\n"
        "    cursor = connection.cursor()\n"
        "    cursor.execute('CREATE TABLE mc (x INTEGER)')\n"
        "    cursor.execute('INSERT INTO mc VALUES (41)')\n"
        "    connection.commit()\n"
        "    cursor.execute('SELECT x + 1 FROM mc')\n"
        "    print('fetched', cursor.fetchall())\n"
        "    cursor.close()\n"
        "    connection.close()\n",
        encoding="utf-8",
    )
    result = env.run("job", "run", str(job))
    assert "fetched [(42,)]" in step_output(result.stdout)
    assert env.query("SELECT x FROM mc") == [(41,)]


# templates


def test_execute_template_runs_the_template_with_its_arguments(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "parent"
    template = job / "templates" / "fill"
    template.mkdir(parents=True)
    (template / "10_create.sql").write_text(
        "CREATE TABLE IF NOT EXISTS tpl_out (who TEXT, n INTEGER)", encoding="utf-8"
    )
    (template / "20_insert.py").write_text(
        "def run(job_input):\n"
        "    args = job_input.get_arguments()\n"
        "    print('template args', sorted(args.items()))\n"
        "    job_input.execute_query(\"INSERT INTO tpl_out VALUES ('{who}', {n})\")\n",
        encoding="utf-8",
    )
    write_notebook(
        job / "10_main.ipynb",
        [
            "run = job_input.execute_template('fill', {'who': 'ann', 'n': 7})\n"
            "print('template status', run.status)\n"
            "job_input.execute_template(\n"
            "    template_name='fill', template_args={'who': 'bob', 'n': 8})",
            "print('rows', job_input.execute_query('SELECT who, n FROM tpl_out ORDER BY n'))",
        ],
    )
    result = env.run("job", "run", str(job), "--arguments", '{"who": "parent-arg"}')
    out = step_output(result.stdout)
    assert "template args [('n', 7), ('who', 'ann')]" in out
    assert "template status succeeded" in out
    assert "rows [('ann', 7), ('bob', 8)]" in out
    assert env.query("SELECT who, n FROM tpl_out ORDER BY n") == [("ann", 7), ("bob", 8)]


def test_a_failing_or_missing_template_fails_the_step(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "parent2"
    template = job / "templates" / "broken"
    template.mkdir(parents=True)
    (template / "10_bad.sql").write_text("SELECT * FROM not_there_at_all", encoding="utf-8")
    write_notebook(
        job / "10_main.ipynb",
        [
            "name = job_input.get_arguments()['template']\njob_input.execute_template(name, {})",
        ],
    )
    broken = env.run("job", "run", str(job), "--arguments", '{"template": "broken"}', check=1)
    assert "template broken" in broken.stdout
    assert "failed" in broken.stdout
    missing = env.run("job", "run", str(job), "--arguments", '{"template": "nope"}', check=1)
    assert "no template 'nope'" in missing.stdout


# job facts


def test_job_facts_and_temporary_directory(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "facts"
    job.mkdir()
    (job / "config.ini").write_text("[owner]\nteam = analytics\n", encoding="utf-8")
    report = tmp_path / "facts.json"
    (job / "10_facts.py").write_text(
        "import json, os\n"
        "def run(job_input):\n"
        "    tmp = job_input.get_temporary_write_directory()\n"
        "    (tmp / 'scratch.txt').write_text('hi')\n"
        "    facts = {\n"
        "        'name': job_input.get_name(),\n"
        "        'directory': str(job_input.get_job_directory()),\n"
        "        'execution': job_input.get_execution_properties(),\n"
        "        'arguments': job_input.get_arguments(),\n"
        "        'tmp': str(tmp),\n"
        "        'tmp_again': str(job_input.get_temporary_write_directory()),\n"
        "        'scratch': (tmp / 'scratch.txt').read_text(),\n"
        "        'cwd': os.getcwd(),\n"
        "    }\n"
        "    path = job_input.get_arguments()['report']\n"
        "    with open(path, 'w') as file:\n"
        "        json.dump(facts, file)\n",
        encoding="utf-8",
    )
    started = time.time()
    env.run("job", "run", str(job), "--arguments", json.dumps({"report": str(report)}))
    facts = json.loads(report.read_text(encoding="utf-8"))
    run_id = runs_json(env, job)[0]["id"]
    assert facts["name"] == "facts"
    assert Path(facts["directory"]) == job.resolve()
    assert Path(facts["cwd"]) == job.resolve()
    assert facts["arguments"] == {"report": str(report)}
    execution = facts["execution"]
    assert execution["pa__execution_id"] == f"facts-run-{run_id}"
    assert execution["pa__op_id"] == f"facts-run-{run_id}"
    assert execution["pa__job_name"] == "facts"
    assert execution["pa__team_name"] == "analytics"
    assert abs(int(execution["pa__job_start_unixtime"]) - started) < 60
    assert execution["pa__job_start_ts_expr"] == (
        f"cast({execution['pa__job_start_unixtime']} as timestamp)"
    )
    assert facts["tmp"] == facts["tmp_again"]
    assert facts["scratch"] == "hi"
    assert not Path(facts["tmp"]).is_relative_to(job.resolve())
    assert not Path(facts["tmp"]).exists()  # removed when the run ends


def test_job_toml_name_is_the_job_name(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "dirname"
    job.mkdir()
    (job / "job.toml").write_text('[job]\nname = "renamed"\nteam = "ops"\n', encoding="utf-8")
    write_notebook(
        job / "10.ipynb",
        [
            "props = job_input.get_execution_properties()\n"
            "print('facts', job_input.get_name(), props['pa__job_name'], props['pa__team_name'])",
        ],
    )
    result = env.run("job", "run", str(job))
    assert "facts renamed renamed ops" in step_output(result.stdout)


def test_skip_remaining_steps_ends_the_run_successfully(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "skipper"
    job.mkdir()
    write_notebook(
        job / "10_a.ipynb",
        [
            "print('first')\njob_input.skip_remaining_steps()\nprint('rest of the step runs')",
            "print('second')",
        ],
    )
    (job / "20_b.sql").write_text("CREATE TABLE never_made (x INTEGER)", encoding="utf-8")
    result = env.run("job", "run", str(job))
    assert step_output(result.stdout) == ["first", "rest of the step runs"]
    assert "never_made" not in table_names(env.db_url)
    record = show_run_json(env, job, runs_json(env, job)[0]["number"])
    assert record["status"] == "succeeded"
    assert [s["status"] for s in record["steps"]] == ["succeeded", "skipped", "skipped"]
    assert "skip_remaining_steps()" in record["steps"][1]["reason"]


# target database


def test_db_option_overrides_job_config_and_environment(env: Env, tmp_path: Path) -> None:
    configured = f"sqlite:///{tmp_path / 'configured.sqlite'}"
    chosen = f"sqlite:///{tmp_path / 'chosen.sqlite'}"
    job = tmp_path / "where"
    job.mkdir()
    write_notebook(
        job / "10.ipynb",
        [
            "tag = job_input.get_arguments()['tag']\n"
            "job_input.send_object_for_ingestion({'tag': tag}, destination_table=f'landed_{tag}')",
        ],
    )
    env.run("job", "run", str(job), "--arguments", '{"tag": "env"}')
    result = env.run("job", "run", str(job), "--db", chosen, "--arguments", '{"tag": "opt"}')
    assert "chosen.sqlite" in result.stdout
    assert env.query("SELECT tag FROM landed_env") == [("env",)]
    assert "landed_opt" not in table_names(env.db_url)
    assert table_names(chosen) == {"landed_opt"}

    (job / "job.toml").write_text(f'[job]\ndb = "{configured}"\n', encoding="utf-8")
    env.run("job", "run", str(job), "--arguments", '{"tag": "toml"}')
    env.run("job", "run", str(job), "--db", chosen, "--arguments", '{"tag": "opt2"}')
    assert table_names(configured) == {"landed_toml"}
    assert table_names(chosen) == {"landed_opt", "landed_opt2"}
    assert "landed_toml" not in table_names(env.db_url)


def test_without_a_database_setting_the_job_uses_sqlite_in_home(env: Env, tmp_path: Path) -> None:
    del env.variables["NBPLANE_DB_URL"]
    job = tmp_path / "homed"
    job.mkdir()
    write_notebook(
        job / "10.ipynb",
        ["job_input.send_object_for_ingestion({'x': 1}, destination_table='at_home')"],
    )
    env.run("job", "run", str(job))
    warehouse = env.home / "warehouse.sqlite"
    assert table_names(f"sqlite:///{warehouse}") == {"at_home"}
    assert "at_home" not in table_names(env.db_url)


def test_database_password_is_not_shown(env: Env, tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    job = tmp_path / "pw"
    job.mkdir()
    write_notebook(job / "10.ipynb", ["print(repr(job_input))"])
    result = env.run("job", "run", str(job))
    password = make_url(env.db_url).password
    if password:
        assert f":{password}@" not in result.stdout
        assert ":***@" in result.stdout
        record = runs_json(env, job)[0]
        assert f":{password}@" not in record["db_url"]
    else:
        assert env.db_url.removeprefix("sqlite:///") in result.stdout
