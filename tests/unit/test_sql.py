from sqlalchemy import create_engine, text

from nbplane.jobs.sql import bind_parameters, split_statements, substitute


def test_split_keeps_each_statement_and_its_line() -> None:
    script = "-- setup\nCREATE TABLE t (x INT);\n\nINSERT INTO t\nVALUES (1);\nSELECT ';' AS s"
    statements = split_statements(script)
    assert [s.text for s in statements] == [
        "CREATE TABLE t (x INT)",
        "INSERT INTO t\nVALUES (1)",
        "SELECT ';' AS s",
    ]
    assert [s.line for s in statements] == [2, 4, 6]


def test_statement_starts_after_the_comments_before_it() -> None:
    statements = split_statements("SELECT 1;\n-- load\n/* more */\nINSERT INTO t VALUES (2);")
    assert [(s.text, s.line) for s in statements] == [
        ("SELECT 1", 1),
        ("INSERT INTO t VALUES (2)", 4),
    ]


def test_split_drops_comment_only_parts() -> None:
    assert [s.text for s in split_statements("SELECT 1;\n-- the end\n")] == ["SELECT 1"]
    assert split_statements("  \n-- nothing\n") == []


def test_substitute_known_names_and_leaves_unknown_ones() -> None:
    sql = "SELECT * FROM {table} WHERE day = '{day}' AND x = '{unknown}'"
    assert substitute(sql, {"table": "sales", "day": 3}) == (
        "SELECT * FROM sales WHERE day = '3' AND x = '{unknown}'"
    )


def test_substitute_ignores_json_like_braces() -> None:
    assert substitute("SELECT '{\"a\": 1}'", {"a": 2}) == "SELECT '{\"a\": 1}'"


def test_bind_parameters_are_the_placeholders_the_lexer_sees() -> None:
    bound = bind_parameters(
        "SELECT :day, ':quoted', '10:30', x::int -- :commented\nFROM t WHERE a = :day AND b = :b_2"
    )
    assert bound.names == ["day", "b_2"]
    assert bound.text == (
        "SELECT :day, '\\:quoted', '10:30', x::int -- \\:commented\n"
        "FROM t WHERE a = :day AND b = :b_2"
    )


def test_bound_text_gives_literal_colons_back_and_binds_values() -> None:
    engine = create_engine("sqlite://")
    bound = bind_parameters("SELECT :who, ' :who', ':7' /* :x */")
    with engine.connect() as connection:
        row = connection.execute(text(bound.text), {"who": "O'Brien"}).one()
    assert tuple(row) == ("O'Brien", " :who", ":7")


def test_numbered_placeholders_are_not_bound() -> None:
    assert bind_parameters("SELECT :1, $1").names == []
