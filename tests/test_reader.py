"""The fast reader against pydicom, file by file, on every real file we have.

Compared per element (tag and sequence path): VR, private creator and the value as text. The text is
normalized on both sides the same way (each of several values stripped of surrounding blanks), which
is the one deliberate difference documented in docs/reader.md.
"""

from __future__ import annotations

import tracemalloc
import warnings
from pathlib import Path

import pydicom
import pytest

from curation.crawler.pydicom_reader import read_with_pydicom
from curation.crawler.reader import (
    DEFAULT_LIMITS,
    MAX_DEPTH,
    Header,
    Limits,
    Unsupported,
    read_header,
    read_header_bytes,
    sniff,
)
from curation.errors import DicomReadError

from . import fuzz_cases
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


# -- work limits: no file can make the reader walk, read or inflate without end ------------------


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _reason(path: str, limits: Limits = DEFAULT_LIMITS) -> str:
    with pytest.raises(DicomReadError) as info:
        read_header(path, limits=limits)
    return info.value.reason


def test_zeros_where_the_dataset_starts_are_given_up_at_once(tmp_path: Path) -> None:
    ct = fuzz_cases.seeds()["CT_small.dcm"]
    after_meta = _write(tmp_path, "a.dcm", fuzz_cases.zero_bomb(4 << 20, ct))
    after_preamble = _write(tmp_path, "b.dcm", b"\0" * 128 + b"DICM" + bytes(4 << 20))
    # Given up before a tenth element: the megabytes of zeros are not walked as elements.
    tiny = Limits(max_elements=10)
    assert _reason(after_meta, tiny) == "zero_padding"
    assert _reason(after_preamble, tiny) == "zero_padding"


def test_zero_padding_after_a_dataset_ends_it_with_a_caveat(tmp_path: Path) -> None:
    src = next(f for f in pydicom_test_files() if f.name == "rtplan.dcm")  # no pixel data
    whole, _ = read_header(str(src))
    padded, _ = read_header(_write(tmp_path, "p.dcm", src.read_bytes() + bytes(1 << 20)))
    assert _rows(padded) == _rows(whole)
    assert [r for r, _ in padded.caveats] == ["zero_padding"]


def test_gzip_bomb_is_inflated_no_further_than_the_limit(tmp_path: Path) -> None:
    # 64 KB on disk, a header of 64 MB once inflated (one long value before the pixel data).
    bomb = _write(tmp_path, "v.dcm.gz", fuzz_cases.gzip_value_bomb(64 << 20))
    tracemalloc.start()
    try:
        assert _reason(bomb, Limits(max_header_bytes=1 << 20)) == "header_too_large"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak / 2**20:.1f} MiB allocated for a 1 MiB header limit"
    # A header of small elements: the element limit.
    flood = _write(tmp_path, "f.dcm.gz", fuzz_cases.gzip_element_bomb(200_000))
    assert _reason(flood, Limits(max_elements=50_000)) == "header_too_large"
    zeros = _write(tmp_path, "z.dcm.gz", fuzz_cases.gzip_bomb(64 << 20))
    assert _reason(zeros) == "zero_padding"


def test_element_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "e.dcm", fuzz_cases.element_bomb(20_000))
    assert _reason(path, Limits(max_elements=5_000)) == "header_too_large"
    header, _ = read_header(path)  # within the default limit: read whole
    assert len(header.elements) - header.start > 20_000


def test_nesting_limit_has_its_own_reason(tmp_path: Path) -> None:
    deep = _write(tmp_path, "d.dcm", fuzz_cases.deep_sequence(MAX_DEPTH + 1))
    assert _reason(deep) == "too_deep"
    header, _ = read_header(deep, limits=Limits(max_depth=MAX_DEPTH + 1))
    assert max(p.count("[") for p in header.elements.seq_path) == MAX_DEPTH + 1
    # Far deeper than Python's recursion allows: the limit, not a RecursionError.
    assert _reason(_write(tmp_path, "dd.dcm", fuzz_cases.deep_sequence(2_000))) == "too_deep"


def test_header_byte_limit_versus_a_truncated_file(tmp_path: Path) -> None:
    ct = fuzz_cases.seeds()["CT_small.dcm"]
    # A length of almost 4 GB: in a small file the element runs past its end (truncated); in a
    # file larger than the limit the header would need more than the limit (not read past it).
    assert _reason(_write(tmp_path, "s.dcm", fuzz_cases.huge_length(ct))) == "truncated"
    big = _write(tmp_path, "b.dcm", fuzz_cases.huge_length(ct) + bytes(200_000))
    assert _reason(big, Limits(max_header_bytes=100_000)) == "header_too_large"


def test_long_header_read_in_steps_equals_one_read(tmp_path: Path) -> None:
    # The walk goes on where the last read stopped: same rows as reading all bytes at once,
    # also when a read ends inside a sequence item that sets its own character set.
    files = [f for f in pydicom_test_files() if f.stat().st_size > 40_000][:40]
    assert files
    for f in files:
        try:
            stepped, gz = read_header(str(f))
        except (Unsupported, DicomReadError):
            continue
        if gz:
            continue
        whole = read_header_bytes(f.read_bytes(), complete=True)
        assert _rows(stepped) == _rows(whole), f
        assert stepped.caveats == whole.caveats, f


# -- caveats where the catalog differs from pydicom without failing -------------------------------


def _file(*elements: bytes) -> bytes:
    return fuzz_cases._meta() + b"".join(elements)


def _caveats(tmp_path: Path, data: bytes) -> dict[str, str]:
    header, _ = read_header(_write(tmp_path, "c.dcm", data))
    return dict(header.caveats)


def test_repeated_and_unordered_tags_are_caveats(tmp_path: Path) -> None:
    e = fuzz_cases._element
    sop, name, pid = (e(0x00080018, b"UI", b"1.2\0"), e(0x00100010, b"PN", b"A^B "),
                      e(0x00100020, b"LO", b"P1"))  # fmt: skip
    assert _caveats(tmp_path, _file(sop, name, pid)) == {}
    assert list(_caveats(tmp_path, _file(sop, name, name, pid))) == ["duplicate_tag"]
    assert list(_caveats(tmp_path, _file(sop, pid, name))) == ["tag_order"]


def test_non_ascii_number_text_is_a_caveat(tmp_path: Path) -> None:
    e = fuzz_cases._element
    data = _file(e(0x00080018, b"UI", b"1.2\0"), e(0x00180050, b"DS", b"1.\xb55 "))
    header, _ = read_header(_write(tmp_path, "ds.dcm", data))
    assert [r for r, _ in header.caveats] == ["invalid_value"]
    assert header.elements.value[header.elements.tag.index(0x00180050)] == "1.\xb55"


def test_undecodable_iso2022_text_is_a_caveat_not_a_warning(tmp_path: Path) -> None:
    """pydicom's UserWarnings while decoding end up as the file's caveats, not on stderr."""
    e = fuzz_cases._element
    charset = e(0x00080005, b"CS", b"ISO 2022 IR 6\\ISO 2022 IR 87")
    sop = e(0x00080018, b"UI", b"1.2\0")
    for name, value in (("escape", b"\x1b$Zab^cd"), ("bytes", b"\x1b$B\xff\xfe\xfd^x")):
        path = _write(tmp_path, f"{name}.dcm", _file(charset, sop, e(0x00100010, b"PN", value)))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            header, _ = read_header(path)
        assert caught == [], name
        assert [r for r, _ in header.caveats][:1] == ["bad_charset"], name
        assert "PN value" in header.caveats[0][1]


def test_iso2022_person_names_are_a_caveat_only_where_pydicom_reads_other_text(
    tmp_path: Path,
) -> None:
    # Japanese, Korean and Chinese names under ISO 2022 code extensions: the same text as pydicom.
    for name in ("chrH31.dcm", "chrH32.dcm", "chrJapMulti.dcm", "chrKoreanMulti.dcm"):
        src = next(f for f in pydicom_test_files() if f.name == name)
        header, _ = read_header(str(src))
        assert header.caveats == [], name
    # A Cyrillic name whose code element is still designated at the ^ (no escape back): the
    # delimiter resets it here (the given name read as Latin-1), pydicom reads on in Cyrillic.
    e = fuzz_cases._element
    cyrillic = b"\x1b-L" + "Иванов^Иван".encode("iso8859_5")
    data = _file(
        e(0x00080005, b"CS", b"ISO 2022 IR 100\\ISO 2022 IR 144"),
        e(0x00080018, b"UI", b"1.2\0"),
        e(0x00100010, b"PN", cyrillic + b" " * (len(cyrillic) % 2)),
    )
    path = _write(tmp_path, "cyr.dcm", data)
    header, _ = read_header(path)
    assert [r for r, _ in header.caveats] == ["iso2022_name"]
    ours = header.elements.value[header.elements.tag.index(0x00100010)]
    assert ours != str(pydicom.dcmread(path).PatientName) == "Иванов^Иван"
