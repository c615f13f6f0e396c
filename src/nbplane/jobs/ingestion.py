"""Rows sent for ingestion land in tables of the job's database, created and widened as needed."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import TypeEngine

from nbplane.errors import IngestionError


def column_type(value: Any) -> TypeEngine[Any]:
    """The SQL type a new column gets from the first value seen for it."""
    if isinstance(value, bool):
        return Boolean()
    if isinstance(value, int):
        return BigInteger()
    if isinstance(value, float):
        return Float()
    if isinstance(value, decimal.Decimal):
        return Numeric()
    if isinstance(value, dt.datetime):
        return DateTime()
    if isinstance(value, dt.date):
        return Date()
    if isinstance(value, bytes):
        return LargeBinary()
    return Text()


def plain_value(value: Any) -> Any:
    """Make a value storable: missing values (None, NaN, NaT, pd.NA) to NULL, numpy and pandas
    scalars to Python, containers to JSON text."""
    if _is_missing(value):
        return None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        value = value.to_pydatetime()
    elif hasattr(value, "item") and not isinstance(value, bytes | str):  # numpy scalar
        value = value.item()
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return value


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN and NaT are not equal to themselves
    except TypeError:  # pd.NA refuses to be a bool
        return True
    except ValueError:  # an array: a value, not a missing one
        return False


class Ingester:
    """Buffers rows per table and writes them in batches, flushed at the end of every step."""

    def __init__(self, engine: Engine, batch_size: int) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self.rows_written: dict[str, int] = {}

    def add_object(self, payload: Mapping[str, Any], table: str) -> None:
        if not isinstance(payload, Mapping):
            raise IngestionError(
                f"send_object_for_ingestion: payload must be a dict, got {type(payload).__name__}",
                table=table,
                field="payload",
            )
        self._add(table, [{str(k): plain_value(v) for k, v in payload.items()}])

    def add_rows(self, rows: Any, column_names: Sequence[str], table: str) -> None:
        if hasattr(rows, "itertuples"):  # a pandas DataFrame
            rows = rows.itertuples(index=False, name=None)
        if not isinstance(rows, Iterable):
            raise IngestionError(
                "send_tabular_data_for_ingestion: rows must be iterable", table=table, field="rows"
            )
        columns = [str(name) for name in column_names]
        records = []
        for number, row in enumerate(rows, start=1):
            values = list(row)
            if len(values) != len(columns):
                raise IngestionError(
                    f"send_tabular_data_for_ingestion: row {number} has {len(values)} values "
                    f"for {len(columns)} columns",
                    table=table,
                    field=f"rows[{number - 1}]",
                )
            records.append({c: plain_value(v) for c, v in zip(columns, values, strict=True)})
        self._add(table, records)

    def _add(self, table: str, records: list[dict[str, Any]]) -> None:
        if not table or not isinstance(table, str):
            raise IngestionError("destination_table is required", field="destination_table")
        buffer = self._buffers.setdefault(table, [])
        buffer.extend(records)
        if len(buffer) >= self.batch_size:
            self.flush(table)

    def flush(self, only: str | None = None) -> None:
        for table in [only] if only else list(self._buffers):
            records = self._buffers.pop(table, [])
            if records:
                self._write(table, records)

    def _write(self, name: str, records: list[dict[str, Any]]) -> None:
        schema, _, table_name = name.rpartition(".")
        try:
            with self.engine.begin() as connection:
                table = self._prepare_table(connection, schema or None, table_name, records)
                keys = [column.name for column in table.columns]
                connection.execute(
                    table.insert(), [{key: record.get(key) for key in keys} for record in records]
                )
        except SQLAlchemyError as exc:
            raise IngestionError(
                f"ingesting {len(records)} rows into {name} failed: "
                f"{getattr(exc, 'orig', None) or exc}",
                table=name,
            ) from exc
        self.rows_written[name] = self.rows_written.get(name, 0) + len(records)

    def _prepare_table(
        self, connection: Any, schema: str | None, name: str, records: list[dict[str, Any]]
    ) -> Table:
        """The table as it is now (steps' SQL may have dropped or altered it), created or
        widened for these records; its columns carry their types so values are converted."""
        first_values: dict[str, Any] = {}
        for record in records:
            for column, value in record.items():
                if first_values.get(column) is None:
                    first_values[column] = value
        inspector = inspect(connection)
        if not inspector.has_table(name, schema=schema):
            columns = [Column(c, column_type(v)) for c, v in first_values.items()]
            table = Table(name, MetaData(), *columns, schema=schema)
            table.create(connection)
            return table
        existing = {c["name"]: c["type"] for c in inspector.get_columns(name, schema=schema)}
        preparer = connection.dialect.identifier_preparer
        qualified = preparer.quote(name)
        if schema is not None:
            qualified = f"{preparer.quote_schema(schema)}.{qualified}"
        for column, value in first_values.items():
            if column not in existing:
                new_type = column_type(value)
                type_sql = new_type.compile(dialect=connection.dialect)
                connection.execute(
                    text(f"ALTER TABLE {qualified} ADD COLUMN {preparer.quote(column)} {type_sql}")
                )
                existing[column] = new_type
        return Table(name, MetaData(), *(Column(c, t) for c, t in existing.items()), schema=schema)
