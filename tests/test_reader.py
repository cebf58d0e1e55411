"""The fast reader against pydicom, file by file, on every real file we have.

Compared per element (tag and sequence path): VR, private creator and the value as text. The text is
normalized on both sides the same way (each of several values stripped of surrounding blanks), which
is the one deliberate difference documented in docs/reader.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from curation.crawler.pydicom_reader import read_with_pydicom
from curation.crawler.reader import Header, Unsupported, read_header, read_header_bytes, sniff
from curation.errors import DicomReadError

from .conftest import SHARED_DICOM, needs_shared, pydicom_test_files, shared_corpus_files

ElementKey = tuple[str, int]


def _rows(header: Header) -> dict[ElementKey, tuple[str, str | None, str | None]]:
    e, i = header.elements, header.start
    out = {}
    for tag, vr, value, path, creator in zip(
        e.tag[i:], e.vr[i:], e.value[i:], e.seq_path[i:], e.private_creator[i:], strict=True
    ):
        if not path and tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):
            continue  # pixel data: the fast reader records it, pydicom stops before it
        out[(path, tag)] = (vr, creator, _norm(value, vr))
    return out


def _norm(value: str | None, vr: str) -> str | None:
    if value is None:
        return None
    if vr == "PN":
        value = value.rstrip("=")  # pydicom drops a name's empty trailing component groups
    return "\\".join(v.strip(" \x00") for v in value.split("\\"))


def _compare(path: Path) -> str:
    """'same', 'unsupported', 'both-fail', or raise AssertionError with the first differences."""
    try:
        fast, _ = read_header(str(path))
    except Unsupported:
        return "unsupported"
    except DicomReadError as exc:
        try:
            read_with_pydicom(str(path))
        except DicomReadError:
            return "both-fail"
        # The fast reader may refuse what pydicom tolerates; the crawl then uses pydicom.
        return f"fast-refused:{exc.reason}"
    slow, _ = read_with_pydicom(str(path))
    a, b = _rows(fast), _rows(slow)
    diffs = [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    assert not diffs, f"{path}: {len(diffs)} elements differ, first: {diffs[:3]}"
    assert fast.sop_instance_uid == slow.sop_instance_uid
    return "same"


def _sources() -> list[str]:
    return sorted({f.relative_to(SHARED_DICOM).parts[0] for f in shared_corpus_files()}) or [
        "absent"
    ]


@needs_shared
@pytest.mark.parametrize("source", _sources())
def test_fast_reader_matches_pydicom_on_shared_corpus(source: str) -> None:
    # One test per corpus source, so that the 2,404 files spread over the test workers.
    files = [f for f in shared_corpus_files() if f.relative_to(SHARED_DICOM).parts[0] == source]
    assert files
    outcomes = [_compare(f) for f in files]
    # Every file is read identically, except the big-endian one, which is left to pydicom.
    odd = {f.name: o for f, o in zip(files, outcomes, strict=True) if o != "same"}
    assert odd in ({}, {"3.dcm": "unsupported"}), odd


def test_fast_reader_matches_pydicom_on_pydicom_test_files() -> None:
    files = pydicom_test_files()
    assert len(files) > 50
    outcomes = {f.name: _compare(f) for f in files}
    same = sum(o == "same" for o in outcomes.values())
    # The rest are deliberately malformed or in encodings left to pydicom; none may differ.
    assert same >= 0.8 * len(files), outcomes


def test_sniff_tells_dicom_from_other_bytes() -> None:
    assert sniff(b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00") == "preamble"
    assert sniff(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100") == "raw"
    assert sniff(b"%PDF-1.4 not a dicom file at all") is None
    assert sniff(b"") is None


def test_truncated_header_is_reported_with_reason(tmp_path: Path) -> None:
    src = next(f for f in pydicom_test_files() if f.name == "CT_small.dcm")
    data = src.read_bytes()
    with pytest.raises(DicomReadError) as info:
        read_header_bytes(data[:700], complete=True)
    assert info.value.reason == "truncated"


def test_bad_sequence_length_is_reported() -> None:
    # An item claims more bytes than its sequence holds.
    meta = b"\0" * 128 + b"DICM"
    uid = b"1.2.840.10008.1.2.1\0"
    meta += b"\x02\x00\x10\x00UI" + len(uid).to_bytes(2, "little") + uid
    seq = b"\x08\x00\x15\x11SQ\0\0" + (16).to_bytes(4, "little")
    item = b"\xfe\xff\x00\xe0" + (64).to_bytes(4, "little") + b"\x08\x00\x50\x11UI\x04\x001.2\0"
    with pytest.raises(DicomReadError) as info:
        read_header_bytes(meta + seq + item, complete=True)
    assert info.value.reason == "bad_length"
