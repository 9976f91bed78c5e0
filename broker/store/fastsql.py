"""Prebuilt statements run straight on the session's DBAPI cursor, for the HL7 hot path.

SQLAlchemy Core spends ~70 us per execute on parameter and result bookkeeping; the statement
itself takes ~5 us on SQLite. A FastStatement compiles its Core statement once per dialect and
keeps the SQL text, the parameter order and the type bind processors (DateTime, JSON), so an
execute is one cursor call on the session's own connection, inside its transaction.
Every parameter must be given: column defaults are not applied here.
"""
from __future__ import annotations

from contextlib import contextmanager
from operator import itemgetter
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement


class _Compiled:
    """A statement compiled for one dialect, with what binding its values needs."""

    def __init__(self, sql: str, names: list[str] | None, processors: dict[str, Any],
                 literals: dict[str, Any]) -> None:
        self.sql = sql
        self.names = names                # positional parameter order; None for named styles
        self.processors = processors      # type conversions (DateTime, JSON) by name
        self.literals = literals          # values fixed in the statement itself
        # By position: the values are taken in order (in C), then only typed slots converted.
        self.processed = [(i, processors[n]) for i, n in enumerate(names or ()) if n in processors]
        self.take = _taker(names) if names else (lambda params: ())


def _taker(names: list[str]) -> Callable[[dict[str, Any]], tuple]:
    """The values of `names` from a dict, as a tuple in that order."""
    take = itemgetter(*names)
    return take if len(names) > 1 else lambda params: (take(params),)


class FastStatement:
    """A Core statement executed on the raw cursor of the session's connection."""

    def __init__(self, statement: ClauseElement | Callable[[str], ClauseElement],
                 keys: Iterable[str] | None = None) -> None:
        """`statement`, or a function of the dialect name giving it (for dialect-specific SQL
        such as INSERT .. ON CONFLICT)."""
        self._statement = statement
        self._keys = list(keys) if keys is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Any) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            statement = self._statement
            if not isinstance(statement, ClauseElement):
                statement = statement(dialect.name)
            compiled = statement.compile(dialect=dialect, column_keys=self._keys)
            literals = {name: bind.value for name, bind in compiled.binds.items()
                        if bind.value is not None and not bind.expanding}
            processors = {name: _faster(compiled.binds[name].type, dialect, process)
                          for name, process in compiled._bind_processors.items()}
            found = _Compiled(compiled.string, compiled.positiontup, processors, literals)
            self._compiled[dialect.name] = found
        return found

    @staticmethod
    def _values(sql: _Compiled, params: dict[str, Any]) -> Any:
        if sql.names is None:  # a named paramstyle (psycopg): a dict
            values = {**sql.literals, **params}
            for name, process in sql.processors.items():
                if values.get(name) is not None:
                    values[name] = process(values[name])
            return values
        if sql.literals:
            params = {**sql.literals, **params}
        if not sql.processed:
            return sql.take(params)
        values = list(sql.take(params))
        for index, process in sql.processed:
            if values[index] is not None:
                values[index] = process(values[index])
        return values

    def execute(self, session: Session, params: dict[str, Any]) -> Any:
        """Run with `params`; returns the DBAPI cursor (fetchone / fetchall)."""
        conn, dbapi = _bound(session)
        sql = self._for(conn.dialect)
        cursor = dbapi.cursor()
        values = self._values(sql, params)
        try:
            cursor.execute(sql.sql, values)
        except conn.dialect.dbapi.Error as exc:
            cursor.close()
            raise _translated(sql.sql, values, exc, conn) from exc
        return cursor

    def executemany(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """Run once per parameter set."""
        conn, dbapi = _bound(session)
        sql = self._for(conn.dialect)
        cursor = dbapi.cursor()
        values = [self._values(sql, row) for row in rows]
        try:
            cursor.executemany(sql.sql, values)
        except conn.dialect.dbapi.Error as exc:
            raise _translated(sql.sql, values, exc, conn) from exc
        finally:
            cursor.close()

    def run(self, session: Session, params: dict[str, Any]) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        cursor = self.execute(session, params)
        count = cursor.rowcount
        cursor.close()
        return count

    def scalar(self, session: Session, params: dict[str, Any]) -> Any:
        """The first column of the first row, or None."""
        cursor = self.execute(session, params)
        row = cursor.fetchone()
        cursor.close()
        return row[0] if row else None

    def first(self, session: Session, params: dict[str, Any]) -> tuple | None:
        """The first row as a tuple, or None."""
        cursor = self.execute(session, params)
        row = cursor.fetchone()
        cursor.close()
        return row


def _faster(kind: Any, dialect: Any, process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Cheaper equivalents of two bind processors the HL7 path runs for every order."""
    if isinstance(kind, JSON):
        # Most steps carry no protocol codes and no extra attributes: their text is fixed.
        empty = {list: process([]), dict: process({})}

        def json_value(value: Any) -> Any:
            return empty[type(value)] if not value and type(value) in empty else process(value)
        return json_value
    if dialect.name != "sqlite" or not isinstance(kind, DateTime):
        return process
    impl = kind.dialect_impl(dialect)
    if not isinstance(impl, SQLITE_DATETIME) or impl._storage_format != SQLITE_DATETIME._storage_format:
        return process

    # SQLite's DateTime processor fills a %-format from a dict (~3 us a value); isoformat
    # writes the same text (YYYY-MM-DD HH:MM:SS.ffffff) for a naive datetime in a third of
    # that. A row's created_at and updated_at are one object: the last text is kept.
    def iso(value: Any) -> Any:
        global _last_iso
        last = _last_iso
        if value is last[0]:
            return last[1]
        if type(value) is datetime and value.tzinfo is None:
            text = value.isoformat(" ", "microseconds")
            _last_iso = (value, text)
            return text
        return process(value)
    return iso


# (datetime, its text) last converted by a fast DateTime processor; the tuple holds the
# datetime, so no other object can reuse its identity while it is here.
_last_iso: tuple[Any, str] = (object(), "")


def _translated(sql: str, values: Any, exc: Exception, conn: Any) -> Exception:
    """The SQLAlchemy exception (IntegrityError, OperationalError...) for a DBAPI error, so
    callers handle errors of these statements as they do for any other."""
    return DBAPIError.instance(sql, values, exc, conn.dialect.dbapi.Error,
                               dialect=conn.dialect)


def _bound(session: Session) -> tuple[Any, Any]:
    """(SQLAlchemy connection, DBAPI connection) of the session's current transaction, looked
    up once per transaction."""
    transaction = session.get_transaction()
    cached = session.info.get("fastsql.connection")
    if cached is not None and cached[0] is transaction and transaction is not None:
        return cached[1]
    conn = session.connection()
    # The driver's own connection: its cursors skip the pool proxy's bookkeeping.
    bound = (conn, conn.connection.dbapi_connection)
    session.info["fastsql.connection"] = (session.get_transaction(), bound)
    return bound


@contextmanager
def savepoint(session: Session, name: str = "intake_apply") -> Iterator[None]:
    """A SAVEPOINT on the session's connection: an exception rolls back to it and re-raises.

    Lighter than Session.begin_nested() (~90 us here). The ORM is kept consistent by flushing
    before the savepoint and, after a rollback to it, expunging every object: rows the
    failed work wrote are gone, so no object may claim to hold them.
    """
    session.flush()
    cursor = _bound(session)[1].cursor()
    cursor.execute(f"SAVEPOINT {name}")
    try:
        yield
        session.flush()
    except BaseException:
        cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
        cursor.execute(f"RELEASE SAVEPOINT {name}")
        cursor.close()
        session.expunge_all()
        raise
    cursor.execute(f"RELEASE SAVEPOINT {name}")
    cursor.close()


def commit_held(session: Session) -> None:
    """Commit the session's work on its DBAPI connection and keep the session for the next
    transaction, which the driver begins with its next statement.

    For a session held across many short transactions (the HL7 writer's groups): a Session
    per transaction with its commit and close costs 12-15% of a stored message's CPU. The
    Session's own transaction stays open around the driver's; pending ORM changes are flushed
    first, and the identity map is emptied after, so the next transaction reads rows afresh.
    A failure leaves the session unusable: roll it back and close it.
    """
    session.flush()
    _bound(session)[1].commit()
    if session.identity_map:
        session.expunge_all()


def undo_all(session: Session) -> _UndoAll:
    """Like savepoint(), for work that is alone in the database transaction of a session held
    as commit_held holds it: an exception rolls the whole transaction back (no SAVEPOINT
    statements to run) and forgets every loaded object; the session goes on."""
    return _UndoAll(session)


class _UndoAll:
    def __init__(self, session: Session) -> None:
        self._session = session

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, traceback) -> bool:
        if kind is None:
            try:
                self._session.flush()  # the ORM's pending rows fail here, not at the commit
                return False
            except BaseException:
                self._undo()
                raise
        self._undo()
        return False

    def _undo(self) -> None:
        _bound(self._session)[1].rollback()
        self._session.expunge_all()
