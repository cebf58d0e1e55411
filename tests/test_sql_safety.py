"""Names and values from outside the code (specs, cohort folders, suites) never change a query.

Hostile inputs: quotes, semicolons, subqueries, ``read_text``/``read_csv``/``COPY``/``ATTACH``, NUL
bytes, 10 MB strings. Each is refused with a message (exit 3 on the command line) or treated as a
literal name or value; no file outside the catalog and the output folder is read or written.
"""

from __future__ import annotations

import duckdb
import pytest

from curation.catalog import quote_ident, quote_literal
from curation.errors import InputError

#: Names that would break out of a naively quoted identifier or literal.
HOSTILE_NAMES = (
    "x\", (SELECT content FROM read_text('/etc/hostname')) AS \"pwned",
    "x'; DROP TABLE t; --",
    'a"b',
    '"',
    "''",
    "; COPY (SELECT 1) TO '/tmp/pwned.sh'",
    "x\" FROM t; ATTACH '/tmp/evil.duckdb' AS e; SELECT \"y",
    "(SELECT 1)",
    "name with spaces and ünïcödé",
    "x" * 10_000_000,
)


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n[:30]))
def test_a_quoted_identifier_is_exactly_its_name(name: str) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a INTEGER)")
    cols = con.sql(f"DESCRIBE SELECT 1 AS {quote_ident(name)} FROM t").fetchall()
    assert [c[0] for c in cols] == [name]
    assert con.sql(f"SELECT {quote_literal(name)}").fetchall() == [(name,)]
    assert con.sql("SELECT count(*) FROM t").fetchall() == [(0,)]  # still there


@pytest.mark.parametrize("bad", ["", "a\0b", "\0"])
def test_empty_or_nul_names_are_refused(bad: str) -> None:
    with pytest.raises(InputError, match="name"):
        quote_ident(bad)
    if bad:
        with pytest.raises(InputError, match="NUL"):
            quote_literal(bad)
