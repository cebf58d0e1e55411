"""Element columns as the catalog's ``elements`` rows: tag text, keyword, private element, UID.

A batch holds a few hundred thousand element rows but only a few hundred distinct tags, so naming is
done once per distinct tag (or private creator + element) and spread to the rows as Arrow dictionary
arrays: no per-row Python, and DuckDB ingests dictionary arrays without a join.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydicom.datadict import get_private_entry, keyword_for_tag

from curation.crawler import compiled
from curation.crawler.reader import ElementColumns

#: The staged element table a reader hands to the catalog writer (catalog.elements_sql reads it).
SCHEMA = pa.schema(
    [
        ("file_id", pa.uint64()),
        ("SOPInstanceUID", pa.dictionary(pa.int32(), pa.string())),
        ("tag_int", pa.uint32()),
        ("tag", pa.dictionary(pa.int32(), pa.string())),
        ("seq_path", pa.string()),
        ("private_creator", pa.string()),
        ("private_element", pa.dictionary(pa.int32(), pa.string())),
        ("vr", pa.string()),
        ("keyword", pa.dictionary(pa.int32(), pa.string())),
        ("value", pa.string()),
        ("value_length", pa.int64()),
        ("n_items", pa.int32()),
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


def _dictionary(indices: np.ndarray, values: Sequence[str | None]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(indices, pa.int32()), pa.array(values, pa.string())
    )


def to_table(
    cols: ElementColumns, file_ids: list[int], sops: list[str], counts: list[int]
) -> pa.Table:
    """The element rows of a batch of files (in order, ``counts`` rows each) as an Arrow table."""
    n_files = len(file_ids)
    per_row_file = np.repeat(np.arange(n_files, dtype=np.int32), counts)
    tags = compiled.uint32_values(cols.tag)
    # Distinct tags by hashing (in order of first appearance), not by sorting every row.
    encoded_tags = pc.dictionary_encode(pa.array(tags, pa.uint32()))
    unique_tags = encoded_tags.dictionary.to_numpy()
    tag_index = encoded_tags.indices.to_numpy()
    tag_text = [f"{int(t):08X}" for t in unique_tags]

    creators = compiled.string_array(cols.private_creator)
    is_private = pc.is_valid(creators).to_numpy(zero_copy_only=False)
    # Public rows: a keyword per distinct tag.
    public_kw = [None if (int(t) >> 16) & 1 else public_keyword(int(t)) for t in unique_tags]
    keyword_index = tag_index.astype(np.int32)
    keyword_values: list[str | None] = list(public_kw)
    private_element_index = np.full(len(tags), -1, dtype=np.int32)
    private_values: list[str | None] = []
    if is_private.any():
        # Private rows: a name per distinct (creator, group, element offset).
        encoded = creators.dictionary_encode()
        creator_names = encoded.dictionary.to_pylist()
        creator_idx = encoded.indices.to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(is_private)
        masked = tags[rows] & np.uint32(0xFFFF00FF)
        key = creator_idx[rows].astype(np.int64) << 32 | masked.astype(np.int64)
        encoded_keys = pc.dictionary_encode(pa.array(key, pa.int64()))
        unique_keys = encoded_keys.dictionary.to_numpy()
        key_index = encoded_keys.indices.to_numpy()
        names: list[str | None] = []
        elements: list[str | None] = []
        for k in unique_keys.tolist():
            creator, t = creator_names[k >> 32], k & 0xFFFFFFFF
            names.append(private_name(creator, t))
            elements.append(f"{t >> 16:04X}xx{t & 0xFF:02X}")
        keyword_index = keyword_index.copy()
        keyword_index[rows] = len(keyword_values) + key_index
        keyword_values += names
        private_element_index[rows] = key_index
        private_values = elements
    private_mask = private_element_index < 0
    return pa.table(
        [
            pa.array(np.asarray(file_ids, dtype=np.uint64)[per_row_file], pa.uint64()),
            _dictionary(per_row_file, list(sops)),
            pa.array(tags, pa.uint32()),
            _dictionary(tag_index.astype(np.int32), tag_text),
            compiled.string_array(cols.seq_path),
            creators,
            pa.DictionaryArray.from_arrays(
                pa.array(
                    np.where(private_mask, 0, private_element_index), pa.int32(), mask=private_mask
                ),
                pa.array(private_values or [None], pa.string()),
            ),
            compiled.string_array(cols.vr),
            pa.DictionaryArray.from_arrays(
                pa.array(keyword_index, pa.int32()),
                pa.array(keyword_values or [None], pa.string()),
            ),
            compiled.string_array(cols.value),
            compiled.int_array(cols.value_length, pa.int64()),
            compiled.int_array(cols.n_items, pa.int32()),
        ],
        schema=SCHEMA,
    )
