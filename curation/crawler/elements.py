"""Element rows of a batch as staged Arrow tables: the rows, and their names once per distinct name.

A batch holds a few hundred thousand element rows but only a few hundred distinct (tag, private
creator, VR) triples, so naming (tag text, keyword, private element) is done once per triple, in a
small ``names`` table, and each row carries the index of its triple: no per-row Python. The
writer gives each triple a catalog-wide ``name_id`` (``element_names``) and stores the rows with
it (``element_values``); the ``elements`` view joins them back.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydicom.datadict import get_private_entry, keyword_for_tag

from curation.crawler import compiled
from curation.crawler.reader import ElementColumns

#: The staged element rows a reader hands to the catalog writer (catalog.element_values_sql reads
#: them): ``name_index`` is the row's name in the batch's :data:`NAMES_SCHEMA` table.
SCHEMA = pa.schema(
    [
        ("file_id", pa.uint64()),
        ("tag_int", pa.uint32()),
        ("name_index", pa.int32()),
        ("seq_path", pa.string()),
        ("value", pa.string()),
        ("value_length", pa.int64()),
        ("n_items", pa.int32()),
    ]
)
#: The distinct names of a batch's rows: one row per (tag, private creator, VR), ``local_id`` 0..n-1.
NAMES_SCHEMA = pa.schema(
    [
        ("local_id", pa.int32()),
        ("tag_int", pa.uint32()),
        ("private_creator", pa.string()),
        ("vr", pa.string()),
        ("tag", pa.string()),
        ("private_element", pa.string()),
        ("keyword", pa.string()),
    ]
)


@cache
def public_keyword(tag: int) -> str | None:
    """pydicom's keyword of a public tag (repeating groups included), else None."""
    return keyword_for_tag(tag) or None


@cache
def private_name(creator: str, tag: int) -> str | None:
    """pydicom's private dictionary name of ``tag`` under ``creator``, else None."""
    try:
        name = get_private_entry(tag, creator)[2]
    except KeyError:
        return None
    return None if name in ("", "Unknown") else name  # pydicom names some entries 'Unknown'


def _name(tag: int, creator: str | None) -> tuple[str | None, str | None]:
    """(private element, keyword) of ``tag`` under ``creator`` (None for a public tag)."""
    if creator is None:
        # An odd group without a creator block is private, yet unnamed.
        return None, None if (tag >> 16) & 1 else public_keyword(tag)
    masked = tag & 0xFFFF00FF
    return f"{masked >> 16:04X}xx{masked & 0xFF:02X}", private_name(creator, masked)


def _indices(array: pa.Array) -> tuple[np.ndarray, list[str | None]]:
    """Dictionary-encode ``array``: per-row codes (nulls as 0, values from 1) and the values."""
    encoded = array.dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64) + 1
    return codes, [None, *encoded.dictionary.to_pylist()]


def to_tables(
    cols: ElementColumns, file_ids: list[int], counts: list[int]
) -> tuple[pa.Table, pa.Table]:
    """The element rows of a batch of files (in order, ``counts`` rows each) and their names."""
    n_files = len(file_ids)
    per_row_file = np.repeat(np.arange(n_files, dtype=np.int32), counts)
    tags = compiled.uint32_values(cols.tag)
    creator_code, creators = _indices(compiled.string_array(cols.private_creator))
    vr_code, vrs = _indices(compiled.string_array(cols.vr))
    # One 64-bit key per row: tag in the high half, (creator, VR) in the low; its distinct values
    # by hashing (in order of first appearance), not by sorting every row.
    pair = creator_code * len(vrs) + vr_code
    if len(vrs) * len(creators) >= 1 << 32:  # the VRs are a few dozen: millions of creators
        raise ValueError(f"{len(creators)} private creators in one batch: too many to key")
    # Unsigned: a tag of group 8000 or more would make a signed key negative.
    key = tags.astype(np.uint64) << np.uint64(32) | pair.astype(np.uint64)
    encoded = pc.dictionary_encode(pa.array(key, pa.uint64()))
    keys = encoded.dictionary.to_numpy()
    names: dict[str, list[object]] = {n: [] for n in NAMES_SCHEMA.names}
    for local_id, key in enumerate(keys.tolist()):
        tag, low = key >> 32, key & 0xFFFFFFFF
        creator, vr = creators[low // len(vrs)], vrs[low % len(vrs)]
        private_element, keyword = _name(tag, creator)
        row = (local_id, tag, creator, vr, f"{tag:08X}", private_element, keyword)
        for column, value in zip(names.values(), row, strict=True):
            column.append(value)
    rows = pa.table(
        [
            pa.array(np.asarray(file_ids, dtype=np.uint64)[per_row_file], pa.uint64()),
            pa.array(tags, pa.uint32()),
            encoded.indices.cast(pa.int32()),
            compiled.string_array(cols.seq_path),
            compiled.string_array(cols.value),
            compiled.int_array(cols.value_length, pa.int64()),
            compiled.int_array(cols.n_items, pa.int32()),
        ],
        names=SCHEMA.names,  # the types of SCHEMA, but value may be large_string (2 GiB+)
    )
    return rows, pa.table(names, schema=NAMES_SCHEMA)
