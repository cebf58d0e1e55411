"""The catalog database: opening it, creating its tables, and deriving typed tables in bulk.

Every typed column is derived here by DuckDB from the text of ``elements`` (``TRY_CAST``,
``string_split``, ``strptime``), batch by batch, never in a Python loop over rows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from curation import schema
from curation.errors import CatalogError, InputError, writing
from curation.schema import INSTANCE_ATTRIBUTES, SHARED_FUNCTIONAL_GROUPS, InstanceAttribute

log = logging.getLogger("curation.catalog")

# Typing helpers, created as temporary macros on every connection.
_MACROS = (
    r"""CREATE OR REPLACE TEMP MACRO dicom_float(v) AS
        TRY_CAST(trim(split_part(v, '\', 1)) AS DOUBLE)""",
    r"""CREATE OR REPLACE TEMP MACRO dicom_int(v) AS
        TRY_CAST(trim(split_part(v, '\', 1)) AS BIGINT)""",
    r"""CREATE OR REPLACE TEMP MACRO dicom_floats(v) AS
        list_transform(string_split(v, '\'), lambda x: TRY_CAST(trim(x) AS DOUBLE))""",
    r"""CREATE OR REPLACE TEMP MACRO dicom_texts(v) AS
        list_transform(string_split(v, '\'), lambda x: trim(x))""",
    # DA is YYYYMMDD; ACR-NEMA files still carry YYYY.MM.DD.
    r"""CREATE OR REPLACE TEMP MACRO dicom_date(v) AS
        CAST(coalesce(try_strptime(trim(v), '%Y%m%d'), try_strptime(trim(v), '%Y.%m.%d')) AS DATE)""",
    # TM is HH[MM[SS[.FFFFFF]]]; old files use HH:MM:SS.
    r"""CREATE OR REPLACE TEMP MACRO dicom_time(v) AS
        TRY_CAST(
            substr(replace(trim(v), ':', ''), 1, 2) || ':' ||
            coalesce(nullif(substr(replace(trim(v), ':', ''), 3, 2), ''), '00') || ':' ||
            coalesce(nullif(substr(replace(trim(v), ':', ''), 5), ''), '00')
        AS TIME)""",
)


def connect(
    db: str | Path, *, read_only: bool = False, create: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open a catalog database with curation's helper macros (``create``: also a new one).

    Only the crawl creates catalogs: every other step opening a path that does not exist is a
    typo, and leaving an empty database file behind would hide it.

    Raises
    ------
    CatalogError
        When the file does not exist (and ``create`` is false) or cannot be opened (locked by
        another process, not a DuckDB file, ...).
    OutputError
        With ``create``, when the folder of a new catalog cannot be made.
    """
    path = Path(db)
    if str(db) != ":memory:" and not create and not path.exists():
        raise CatalogError(f"{path}: no catalog here (run `curation crawl` first)")
    if create and str(db) != ":memory:" and not path.parent.is_dir():
        # A new catalog's folder is made as every step's --out is (`--db out/catalog.duckdb`);
        # a file in its way is an output that cannot be written, not a damaged catalog.
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise CatalogError(f"{path}: cannot open the catalog: {exc}") from exc
    return _with_macros(con)


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Another connection to ``con``'s database, for another thread, with the same helper macros.

    Temporary macros belong to one connection; a cursor of ``con`` starts without them.
    """
    return _with_macros(con.cursor())


def _with_macros(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """``con`` with curation's typing macros (temporary: each connection needs its own)."""
    for macro in _MACROS:
        con.execute(macro)
    return con


def catalog_failure(exc: BaseException) -> bool:
    """True for DuckDB's errors about the database file itself (I/O, checksum, corruption).

    DuckDB reads a catalog lazily: a file cut short or damaged opens, and fails at the first query
    that reaches the missing or damaged block, as an ``IOException`` or as a bare ``duckdb.Error``
    (its class for "Corrupt database" and internal errors). Errors about a query (binder, parser,
    conversion) are not: they are bugs or bad input. The CLI turns these into exit 4; steps that
    catch errors per item (a QC rule) re-raise them, since no later item can succeed.
    """
    if not isinstance(exc, duckdb.Error):
        return False
    return isinstance(exc, duckdb.IOException) or type(exc) is duckdb.Error


def quote_ident(name: str) -> str:
    """``name`` as a DuckDB identifier: in double quotes, inner quotes doubled.

    Every name that reaches SQL from outside the code (a spec's label or column, a column header
    read from a user's file) goes through here; values never do, they are bound as parameters.

    Raises
    ------
    InputError
        ``name`` is not a non-empty string or holds a NUL byte (DuckDB would cut the name there,
        so the quoted name would not be the one checked).
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"{name!r}: a column or table name must be a non-empty string")
    if "\0" in name:
        raise InputError(f"{name[:60]!r}: a column or table name cannot hold a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a SQL string literal, for the few places a value cannot be bound (a file path
    inside a relation handed around as SQL text). Bind values as parameters everywhere else.

    Raises
    ------
    InputError
        ``text`` holds a NUL byte.
    """
    if "\0" in text:
        raise InputError(f"{text[:60]!r}: a path or text cannot hold a NUL byte")
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def opened(
    db: str | Path | duckdb.DuckDBPyConnection, *, read_only: bool = False
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The catalog ``db`` as a connection, for a ``with`` block: the one way a step opens it.

    A path is opened (see :func:`connect`) and closed when the block ends; an open connection is
    used as it is and left open (whoever opened it closes it; ``read_only`` does not apply to it).
    """
    if isinstance(db, duckdb.DuckDBPyConnection):
        yield db
        return
    con = connect(db, read_only=read_only)
    try:
        yield con
    finally:
        con.close()


def os_path(path: str, path_bytes: bytes | None) -> str:
    """The name to open a cataloged file by: from ``path_bytes`` when the catalog kept them.

    ``path`` is text: a name that is not valid UTF-8 shows its odd bytes as ``\\xNN`` there,
    which names no file; its exact bytes are in ``path_bytes`` (``files``, ``instances``).
    """
    return os.fsdecode(path_bytes) if path_bytes is not None else path


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The names of the catalog's tables and views (temporary ones included)."""
    return {r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()}


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """True when the catalog has a table or view ``name``."""
    return name in table_names(con)


def ensure_tables(con: duckdb.DuckDBPyConnection, *, dictionary: bool = True) -> None:
    """Create the crawl's tables if they do not exist yet, and fill the dictionary once.

    Parameters
    ----------
    con
        The catalog.
    dictionary
        Fill ``dicom_dictionary`` now if it is empty. The crawl passes False and fills it with
        :func:`ensure_dictionary` only when it has files to read: filling it imports pydicom's
        dictionaries (~0.5 s), most of the start-up of a crawl that finds nothing new.
    """
    _migrate_elements(con)
    for table in schema.CATALOG_TABLES:
        table.ensure(con)
    if dictionary:
        ensure_dictionary(con)


def ensure_dictionary(con: duckdb.DuckDBPyConnection) -> None:
    """Fill ``dicom_dictionary`` from pydicom's dictionaries if it has no rows yet."""
    if con.sql("SELECT count(*) FROM dicom_dictionary").fetchall()[0][0] == 0:
        _fill_dictionary(con)


def require(con: duckdb.DuckDBPyConnection, *tables: str) -> None:
    """Raise :class:`CatalogError` naming the first of ``tables`` the catalog lacks."""
    have = table_names(con)
    for t in tables:
        if t not in have:
            raise CatalogError(f"the catalog has no table {t!r}; run the step that writes it first")


def _fill_dictionary(con: duckdb.DuckDBPyConnection) -> None:
    import pyarrow as pa
    from pydicom.datadict import DicomDictionary, RepeatersDictionary, private_dictionaries

    rows: dict[str, list[object]] = {
        k: [] for k in ("tag", "private_creator", "keyword", "vr", "vm", "retired")
    }

    def add(tag: str, creator: str | None, entry: tuple[str, ...], keyword: str) -> None:
        rows["tag"].append(tag.upper().replace("XX", "xx"))
        rows["private_creator"].append(creator)
        rows["keyword"].append(keyword or None)
        rows["vr"].append(entry[0])
        rows["vm"].append(entry[1])
        rows["retired"].append(bool(entry[3]))

    for tag, entry in DicomDictionary.items():
        add(f"{tag:08X}", None, entry, entry[4])
    for mask, entry in RepeatersDictionary.items():
        add(mask, None, entry, entry[4])
    for creator, entries in private_dictionaries.items():
        for mask, pentry in entries.items():
            add(mask, creator, pentry, pentry[2])
    table = pa.table(rows)
    con.register("_dictionary_rows", table)
    con.execute("INSERT INTO dicom_dictionary SELECT * FROM _dictionary_rows")
    con.unregister("_dictionary_rows")


# -- bulk derivations of one batch --------------------------------------------------------------


def _typed(attr: InstanceAttribute, expr: str) -> str:
    kind = attr.kind
    if kind == "text":
        return expr
    if kind == "int":
        return f"dicom_int({expr})"
    if kind == "float":
        return f"dicom_float({expr})"
    if kind == "text[]":
        return f"dicom_texts({expr})"
    if kind == "date":
        return f"dicom_date({expr})"
    if kind == "time":
        return f"dicom_time({expr})"
    if kind.startswith("float["):
        n = int(kind[6:-1])
        return (
            f"CASE WHEN len(string_split({expr}, '\\')) = {n} "
            f"THEN CAST(dicom_floats({expr}) AS DOUBLE[{n}]) END"
        )
    raise ValueError(f"unknown attribute kind {kind!r} of {attr.keyword}")


def _shared_path(macro: int) -> str:
    return f"{SHARED_FUNCTIONAL_GROUPS:08X}[0]/{macro:08X}[0]"


def raw_instance_columns() -> list[tuple[str, int, str]]:
    """The text columns a reader hands over per instance: (column, tag, seq_path).

    Top-level attributes, plus, for enhanced multi-frame objects, the same attribute in its shared
    functional group (column ``<keyword>__fg``), which :func:`instances_sql` uses as a fallback.
    """
    cols = [(a.keyword, a.tag, "") for a in INSTANCE_ATTRIBUTES]
    cols += [
        (f"{a.keyword}__fg", a.tag, _shared_path(a.functional_group))
        for a in INSTANCE_ATTRIBUTES
        if a.functional_group is not None
    ]
    cols.append(("TransferSyntaxUID", 0x00020010, ""))
    return cols


def instances_sql(batch_instances: str, batch_files: str) -> str:
    """SELECT that types one batch's raw instance text columns into ``instances`` rows."""
    fg = {a.keyword for a in INSTANCE_ATTRIBUTES if a.functional_group is not None}
    selects = []
    for a in INSTANCE_ATTRIBUTES:
        expr = (
            f'coalesce(r."{a.keyword}", r."{a.keyword}__fg")'
            if a.keyword in fg
            else f'r."{a.keyword}"'
        )
        selects.append(f'{_typed(a, expr)} AS "{a.keyword}"')
    return f"""
        SELECT r.file_id, {", ".join(selects)}, r.TransferSyntaxUID, r.n_elements, f.path, f.path_bytes,
            f.crawl_id
        FROM {batch_instances} r JOIN {batch_files} f USING (file_id)
        WHERE f.status = 'ok'
    """


#: Per-frame attributes: (column, functional group macro, tag, kind).
_FRAME_ATTRIBUTES: tuple[tuple[str, int, int, str], ...] = (
    ("ImagePositionPatient", schema.PLANE_POSITION, 0x00200032, "float[3]"),
    ("ImageOrientationPatient", schema.PLANE_ORIENTATION, 0x00200037, "float[6]"),
    ("PixelSpacing", schema.PIXEL_MEASURES, 0x00280030, "float[2]"),
    ("SliceThickness", schema.PIXEL_MEASURES, 0x00180050, "float"),
    ("SpacingBetweenSlices", schema.PIXEL_MEASURES, 0x00180088, "float"),
    ("StackID", schema.FRAME_CONTENT, 0x00209056, "text"),
    ("InStackPositionNumber", schema.FRAME_CONTENT, 0x00209057, "int"),
    ("TemporalPositionIndex", schema.FRAME_CONTENT, 0x00209128, "int"),
    ("DimensionIndexValues", schema.FRAME_CONTENT, 0x00209157, "text"),
    ("RescaleSlope", schema.PIXEL_VALUE_TRANSFORMATION, 0x00281053, "float"),
    ("RescaleIntercept", schema.PIXEL_VALUE_TRANSFORMATION, 0x00281052, "float"),
    ("DiffusionBValue", schema.MR_DIFFUSION, 0x00189087, "float"),
)


def frames_sql(batch_elements: str, batch_files: str) -> str:
    """SELECT that turns one batch's per-frame functional groups into ``frames`` rows."""
    per_frame = f"{schema.PER_FRAME_FUNCTIONAL_GROUPS:08X}"
    pf, sh, out = [], [], []
    for name, macro, tag, kind in _FRAME_ATTRIBUTES:
        pf.append(
            f"max(value) FILTER (WHERE rest = '/{macro:08X}[0]' AND tag_int = {tag}) AS \"{name}\""
        )
        sh.append(
            f"max(value) FILTER (WHERE seq_path = '{_shared_path(macro)}' AND tag_int = {tag}) AS \"{name}\""
        )
        attr = InstanceAttribute(name, tag, kind, "")
        out.append(f'{_typed(attr, f"coalesce(pf.{name}, sh.{name})")} AS "{name}"')
    tags = ", ".join(sorted({str(tag) for _, _, tag, _ in _FRAME_ATTRIBUTES}))
    return rf"""
        WITH fe AS (
            -- seq_path is '{per_frame}[i]/MMMMMMMM[0]' in a functional group macro of frame i:
            -- string functions, not regular expressions (these rows are most of an enhanced
            -- object's, and the regular expressions were most of the writer's time on them).
            SELECT file_id, tag_int, value,
                CAST(substr(seq_path, 10, strpos(seq_path, ']') - 10) AS INTEGER) AS frame_index,
                substr(seq_path, strpos(seq_path, ']') + 1) AS rest
            FROM {batch_elements}
            WHERE tag_int IN ({tags}) AND starts_with(seq_path, '{per_frame}[')
        ), pf AS (
            SELECT file_id, frame_index, {", ".join(pf)} FROM fe GROUP BY file_id, frame_index
        ), sh AS (
            SELECT file_id, {", ".join(sh)}
            FROM {batch_elements}
            WHERE tag_int IN ({tags}) AND starts_with(seq_path, '{SHARED_FUNCTIONAL_GROUPS:08X}[0]/')
            GROUP BY file_id
        )
        SELECT pf.file_id, f.SOPInstanceUID, pf.frame_index, {", ".join(out)}
        FROM pf LEFT JOIN sh USING (file_id) JOIN {batch_files} f USING (file_id)
        WHERE f.status = 'ok'
    """


def element_values_sql(batch_elements: str) -> str:
    """SELECT of a transaction's staged element rows, their ``name_id`` set, as ``element_values``."""
    cols = ", ".join(f'"{c}"' for c in schema.ELEMENT_VALUES.column_names)
    return f"SELECT {cols} FROM {batch_elements}"


_SAME_NAME = """n.tag_int = b.tag_int AND n.private_creator IS NOT DISTINCT FROM b.private_creator
        AND n.vr IS NOT DISTINCT FROM b.vr"""


def new_element_names_sql(batch_names: str) -> str:
    """SELECT of the staged names (:data:`curation.crawler.elements.NAMES_SCHEMA`) that
    ``element_names`` lacks, each with a new ``name_id``.

    The ``elements`` view joins each row to its name by ``name_id``, so a (tag, creator, VR) must
    never get two: the writer runs this, its INSERT and :func:`element_name_ids_sql` under one
    lock, each statement a transaction of its own.
    """
    return f"""SELECT (SELECT coalesce(max(name_id), 0) FROM element_names)
                + row_number() OVER (ORDER BY min(local_id)) AS name_id,
            tag_int, private_creator, vr, any_value(tag) AS tag,
            any_value(private_element) AS private_element, any_value(keyword) AS keyword
        FROM {batch_names} b
        WHERE NOT EXISTS (SELECT 1 FROM element_names n WHERE {_SAME_NAME})
        GROUP BY tag_int, private_creator, vr"""


def element_name_ids_sql(batch_names: str) -> str:
    """SELECT of each staged name's ``local_id`` and its ``name_id`` in ``element_names``."""
    return f"""SELECT b.local_id, n.name_id FROM {batch_names} b
        JOIN element_names n ON {_SAME_NAME}"""


def staged_elements_sql(batch_elements: str, batch_names: str, batch_files: str) -> str:
    """SELECT of a staged batch's element rows with every column of ``elements`` (for Parquet parts)."""
    return schema.elements_select(
        batch_elements, batch_names, ("name_index", "local_id"), batch_files
    )


#: Tables with rows per file (``file_id``): what a changed or vanished file's rows are dropped from.
PER_FILE_TABLES = ("element_values", "instances", "frames", "crawl_errors", "files")


def drop_file_rows(con: duckdb.DuckDBPyConnection, file_ids: str) -> None:
    """Delete the rows of the files listed in table ``file_ids`` (column ``file_id``) everywhere.

    Runs in the caller's transaction. ``element_names`` keeps its rows: a name without elements
    names nothing, and the next crawl that meets the tag finds it there.
    """
    for table in PER_FILE_TABLES:
        con.execute(f"DELETE FROM {table} WHERE file_id IN (SELECT file_id FROM {file_ids})")


def table_kinds(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Table type (BASE TABLE, VIEW) of each table of this catalog's main schema."""
    return dict(
        con.sql(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_catalog = current_database()"
        ).fetchall()
    )


def _migrate_elements(con: duckdb.DuckDBPyConnection) -> None:
    """Bring a local catalog's ``elements`` to this version's layout (a Parquet-backed one is left).

    A catalog written before ``elements`` became a view has it as a table of every column; one
    written by a development version between the two has a view over tables of another shape.
    Either is moved into ``element_values``/``element_names`` in one transaction, and refused
    (rolled back) unless every element row arrives. A current catalog gets the view's current
    query (``CREATE OR REPLACE``), so that a change of the view reaches existing catalogs.
    """
    kinds = table_kinds(con)
    if "elements" not in kinds or kinds.get("instances") == "VIEW":
        return  # a new catalog, or a Parquet-backed one (its elements view reads the parts)
    named = "name_id" in {
        r[0]
        for r in con.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'element_names'"
        ).fetchall()
    }
    if kinds["elements"] == "VIEW" and named:
        con.execute(schema.ELEMENTS.ddl(replace=True))
        return
    log.warning("moving elements into element_values and element_names (a one-time upgrade)")
    con.execute("BEGIN TRANSACTION")
    try:
        if kinds["elements"] == "VIEW":  # a development layout: its rows, through its own view
            con.execute("CREATE TEMP TABLE _old_elements AS SELECT * FROM elements")
            con.execute("DROP VIEW elements")
            for name in ("element_values", "element_names"):
                con.execute(f"DROP TABLE IF EXISTS {name}")
            source = "_old_elements"
        else:
            con.execute("ALTER TABLE elements RENAME TO _old_elements")
            source = "main._old_elements"
        for table in (schema.ELEMENT_VALUES, schema.ELEMENT_NAMES):
            table.ensure(con)
        old = f"(SELECT *, CAST(('0x' || tag) AS UINTEGER) AS tag_int FROM {source})"
        con.execute(
            f"""INSERT INTO element_names BY NAME
                SELECT row_number() OVER (ORDER BY tag_int, private_creator, vr) AS name_id,
                    tag_int, private_creator, vr, any_value(tag) AS tag,
                    any_value(private_element) AS private_element, any_value(keyword) AS keyword
                FROM {old} GROUP BY tag_int, private_creator, vr"""
        )
        con.execute(
            f"""INSERT INTO element_values BY NAME
                SELECT b.file_id, n.name_id, b.seq_path, b.value, b.value_length, b.n_items
                FROM {old} b JOIN element_names n ON {_SAME_NAME}"""
        )
        moved, had = con.sql(
            f"SELECT (SELECT count(*) FROM element_values), (SELECT count(*) FROM {source})"
        ).fetchall()[0]
        if moved != had:
            raise CatalogError(
                f"upgrading elements moved {moved} of its {had} rows; the catalog is left as it "
                "was (report this as a bug)"
            )
        con.execute(f"DROP TABLE {source}")
        schema.ELEMENTS.ensure(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


# -- aggregates ---------------------------------------------------------------------------------


def rebuild_aggregates(con: duckdb.DuckDBPyConnection) -> None:
    """Recompute ``series``, ``studies`` and ``patients`` from ``instances`` (one transaction)."""
    con.execute("BEGIN TRANSACTION")
    try:
        for table in (schema.SERIES, schema.STUDIES, schema.PATIENTS):
            table.rebuild(con)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
