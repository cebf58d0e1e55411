"""Read every data element of a DICOM file's header as text, fast.

This is the crawl's hot path. It walks the bytes of the common encodings (explicit and implicit VR
little endian, with or without nested sequences, any pixel encapsulation) with ``struct`` and
produces columns ready for Arrow (the compiled walker's own buffers, or lists), instead of building
pydicom objects: measured ~10x faster than ``pydicom.dcmread`` plus value conversion. Anything it
does not handle (big endian, deflate, an odd VR, a file that switches encodings mid-way) raises
:class:`Unsupported`, and the caller reads the file with pydicom instead
(:mod:`curation.crawler.pydicom_reader`), which is also the oracle the tests compare this reader
against, file by file.

Value text follows pydicom's reading: string values are decoded with the file's character set and
trailing padding (spaces, NULs) is removed; numeric binary values are formatted like Python's ``str``
of the number; several values are joined by a backslash, as DICOM itself separates them. Binary VRs
(OB, OW, OF, OD, OL, OV, UN) and sequences have no text value; their length is kept.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Callable, Iterator, MutableSequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any, BinaryIO, Protocol, SupportsIndex, TypeVar, overload

from curation.errors import DicomReadError

# pydicom is imported where it is used (all cached lookups, or the rare ISO 2022 decoding), not
# here: importing it costs ~0.2 s, the most of the start-up of a crawl with nothing to read.

PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
ITEM = 0xFFFEE000
ITEM_DELIM = 0xFFFEE00D
SEQ_DELIM = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"

# VRs whose explicit encoding uses a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ UC UN UR UT SV UV".split())
_ALL_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN "
    b"UR US UT UV".split()
)
_VR_STR = {v: v.decode() for v in _ALL_VRS}
# Text VRs decoded with SpecificCharacterSet; the others are decoded as the default repertoire.
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
# Text VRs of the default repertoire: decoded directly, no character set involved.
_PLAIN_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})
# One dict lookup per element tells the walker how to read a value.
_PLAIN, _CHARSET_TEXT, _BINARY, _OTHER = 0, 1, 2, 3
_VR_KIND = {
    **dict.fromkeys(_VR_STR.values(), _OTHER),
    **dict.fromkeys(_PLAIN_VRS, _PLAIN),
    **dict.fromkeys(_CHARSET_VRS, _CHARSET_TEXT),
    **dict.fromkeys(_BINARY_VRS, _BINARY),
}
# Explicit VR bytes -> (VR, whether it has the 4-byte length form).
_EXPLICIT_VR = {b: (v, b in _LONG_VRS) for b, v in _VR_STR.items()}
_NUMERIC_FORMAT = {
    "US": "H",
    "SS": "h",
    "UL": "L",
    "SL": "l",
    "FL": "f",
    "FD": "d",
    "SV": "q",
    "UV": "Q",
}
_NUMERIC_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8}

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<L")
_IMPLICIT_HEADER = struct.Struct("<HHL")
_EXPLICIT_HEADER = struct.Struct("<HH2sH")
_ZEROS = bytes(8)  # an element header of zeros: (0000,0000), no VR, length 0
_PN_DELIMS = {0x5E, 0x3D, 0x5C}  # ^ = \ as bytes, what pydicom.charset.decode_bytes expects
_TEXT_DELIMS = {0x5C}


#: Work limits per file, so that no file can stall or exhaust a crawl (hostile or broken input:
#: a gzip bomb, megabytes of zeros, a header of millions of elements, sequences nested without
#: end). Real headers stay far below them: the largest of ``../shared/dicom`` (enhanced Philips MR)
#: has 8,182 elements in 146 kB and nests 6 sequences deep. A file over a limit is reported
#: (``header_too_large``, ``too_deep``) and not read again until it changes.
#: Bytes of header read, or decompressed from a gzip file, before the reader gives up.
MAX_HEADER_BYTES = 64 * 1024 * 1024
#: Data elements (rows, nested ones included) of one header.
MAX_ELEMENTS = 1_000_000
#: Levels of nested sequences.
MAX_DEPTH = 32


@dataclass(frozen=True)
class Limits:
    """The work limits of one file's read (defaults: the module constants above)."""

    max_header_bytes: int = MAX_HEADER_BYTES
    max_elements: int = MAX_ELEMENTS
    max_depth: int = MAX_DEPTH

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_elements", "max_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1, not {getattr(self, name)}")


DEFAULT_LIMITS = Limits()


def _pn_differs(text: str, raw: bytes, encodings: tuple[str, ...]) -> bool:
    """Whether pydicom reads the person name ``raw`` as other text than ``text`` (ours).

    Both decode the ISO 2022 escape sequences; they differ only where a single-byte code element
    is still designated at a ``^`` or ``=`` delimiter, which resets it for this reader (PS3.5
    6.1.2.5.3) and not for pydicom. Empty trailing component groups, which pydicom drops, are
    not a difference (documented in docs/reader.md). Only ISO 2022 names reach this check.
    """
    from pydicom.values import convert_PN

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own complaints about the value: not ours
        try:
            value = convert_PN(raw, list(encodings))
        except (UnicodeError, ValueError):
            return True
    values = value if isinstance(value, MutableSequence) else [value]
    theirs = "\\".join(str(v) for v in values)
    ours = "\\".join(v.rstrip("=") for v in text.rstrip("\x00 ").split("\\"))
    return ours != "\\".join(v.rstrip("=") for v in theirs.split("\\"))


class Unsupported(Exception):
    """The fast reader does not handle this file; read it with pydicom instead."""


class _WrongLength(Exception):
    """A binary value whose length is not a whole number of values of its VR."""


class _NeedMore(Exception):
    """The walk ran past the bytes read so far; ``end`` is the offset it needs."""

    def __init__(self, end: int) -> None:
        self.end = end


T = TypeVar("T")


class Column(Protocol[T]):
    """What the readers do with a column of element rows: a list, or a compiled column.

    The compiled columns (``StrColumn``, ``IntColumn`` of ``_walker.c``) keep their rows in Arrow
    buffers, which the compiled walker fills without a Python object per element; they support
    only this much of a list (rows are appended, read, dropped from the end, and an int row set).
    """

    def append(self, value: T, /) -> None: ...
    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: SupportsIndex, /) -> T: ...
    @overload
    def __getitem__(self, index: slice, /) -> list[T]: ...
    def __setitem__(self, index: SupportsIndex, value: T, /) -> None: ...
    def __delitem__(self, index: slice, /) -> None: ...
    def __iter__(self) -> Iterator[T]: ...
    def index(self, value: T, /) -> int: ...


# New columns: lists, or the compiled columns while the compiled module is in use (set by
# curation.crawler.compiled.select, which also picks the walker).
_text_column: Callable[[], Any] = list
_int_column: Callable[[], Any] = list


def _texts() -> Column[str]:
    return _text_column()


def _optional_texts() -> Column[str | None]:
    return _text_column()


def _ints() -> Column[int]:
    return _int_column()


def _optional_ints() -> Column[int | None]:
    return _int_column()


@dataclass
class ElementColumns:
    """Element rows of one or more files, as parallel columns (one entry per element).

    Lists with the pure-Python walker; the compiled columns (Arrow buffers) with the compiled one.
    """

    tag: Column[int] = field(default_factory=_ints)
    vr: Column[str] = field(default_factory=_texts)
    value: Column[str | None] = field(default_factory=_optional_texts)
    value_length: Column[int | None] = field(default_factory=_optional_ints)
    seq_path: Column[str] = field(default_factory=_texts)
    private_creator: Column[str | None] = field(default_factory=_optional_texts)
    n_items: Column[int | None] = field(default_factory=_optional_ints)

    def __len__(self) -> int:
        return len(self.tag)

    def truncate(self, n: int) -> None:
        """Drop every row from ``n`` on (undoes a failed read that appended part of a file)."""
        for column in (self.tag, self.vr, self.value, self.value_length, self.seq_path,
                       self.private_creator, self.n_items):  # fmt: skip
            del column[n:]


@dataclass
class Header:
    """What reading one file's header produced: its rows are ``elements[start:]``."""

    elements: ElementColumns
    start: int
    transfer_syntax: str | None
    sop_instance_uid: str | None
    media_storage_sop_class: str | None
    pixel_data_offset: int | None  # offset of the pixel data value, when it has a defined length
    pixel_data_length: int | None
    #: Offset of encapsulated (compressed) pixel data, whose length is undefined; else None.
    encapsulated_offset: int | None
    caveats: list[tuple[str, str]]  # (reason, message) of problems that did not stop the read


@cache
def public_vr(tag: int) -> str:
    """VR of a public tag from pydicom's dictionary (repeating groups included), else ``UN``."""
    if tag & 0xFFFF == 0 and tag >> 16 != 0:
        return "UL"  # group length
    from pydicom.datadict import dictionary_VR

    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    if vr == "US or SS":
        return "US"  # refined by PixelRepresentation where it matters (see _ambiguous)
    if vr in ("OB or OW", "US or OW", "US or SS or OW"):
        return "OW"
    return vr if vr != "NONE" else "UN"


@cache
def private_vr(creator: str, tag: int) -> str:
    """VR of a private tag from pydicom's private dictionary, else ``UN``."""
    from pydicom.datadict import private_dictionary_VR

    try:
        vr = private_dictionary_VR(tag, creator)
    except KeyError:
        return "UN"
    if vr in ("OB or OW", "US or OW", "US or SS or OW"):
        return "OW"
    if vr == "US or SS":
        return "US"
    return vr


@lru_cache(maxsize=256)
def encodings_for(charset: str) -> tuple[tuple[str, ...], bool]:
    """Python codecs for a SpecificCharacterSet value, and whether all terms were known."""
    from pydicom.charset import python_encoding

    terms = [t.strip() for t in charset.split("\\")]
    if not terms or terms == [""]:
        return ("iso8859",), True
    codecs: list[str] = []
    known = True
    for i, term in enumerate(terms):
        if not term and i == 0:
            codecs.append("iso8859")
            continue
        codec = python_encoding.get(term)
        if codec is None:
            # pydicom also accepts some misspellings (ISO-IR 100, ISO_IR_100); try its normalization.
            codec = python_encoding.get(term.replace("-", "_").replace("ISO_IR_", "ISO_IR "))
        if codec is None:
            known = False
            continue
        codecs.append(codec)
    return tuple(codecs) or ("iso8859",), known


class _Walker:
    """Walks one dataset's bytes, appending element rows to ``out``."""

    __slots__ = (
        "buf",
        "caveats",
        "codec",
        "complete",
        "dataset_start",
        "default_charset",
        "depth",
        "encodings",
        "ended",
        "explicit",
        "max_depth",
        "max_elements",
        "out",
        "pixel_length",
        "pixel_offset",
        "pixel_representation",
        "resume_pos",
        "row_limit",
        "simple_charset",
        "stop_offset",
        "top_creators",
        "top_prev_tag",
    )

    def __init__(
        self,
        buf: bytes,
        complete: bool,
        explicit: bool,
        out: ElementColumns,
        limits: Limits = DEFAULT_LIMITS,
        start: int | None = None,
    ) -> None:
        self.buf = buf
        self.complete = complete
        self.explicit = explicit
        self.out = out
        # The header's rows begin at ``start``; it may hold at most ``max_elements`` of them.
        self.max_elements = limits.max_elements
        self.row_limit = (len(out) if start is None else start) + limits.max_elements
        self.max_depth = limits.max_depth
        self.depth = 0
        # Where the top-level walk goes on when more bytes arrive (see walk), and the private
        # creators of the top-level dataset, which outlive one call of walk.
        self.resume_pos = 0
        # Where the dataset begins, when zero padding may end it (None: the file meta walker).
        self.dataset_start: int | None = None
        self.top_creators: dict[int, str] = {}
        self.top_prev_tag = -1
        self.ended = False  # the dataset ended in zero padding
        self.codec = "iso8859"
        self.encodings: tuple[str, ...] = ("iso8859",)
        self.simple_charset = True
        self.default_charset = True
        self.caveats: list[tuple[str, str]] = []
        self.pixel_representation = 0
        self.stop_offset: int | None = None
        self.pixel_offset: int | None = None
        self.pixel_length: int | None = None

    # -- values -------------------------------------------------------------------------------
    def _text(self, raw: bytes, vr: str) -> str:
        if vr in _CHARSET_VRS and not self.default_charset:
            if self.simple_charset:
                try:
                    text = raw.decode(self.codec)
                except UnicodeDecodeError as exc:
                    self.caveats.append(
                        ("bad_charset", f"{vr} value not valid {self.codec}: {exc.reason}")
                    )
                    text = raw.decode(self.codec, errors="replace")
            else:
                from pydicom.charset import decode_bytes

                delims = _PN_DELIMS if vr == "PN" else _TEXT_DELIMS
                # pydicom warns (UserWarning, to stderr) where it cannot decode: an unknown
                # escape sequence, bytes invalid in the designated set. Those are this file's
                # caveats, in crawl_errors, not lines on the terminal.
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    text = decode_bytes(raw, list(self.encodings), delims)
                for warning in caught:
                    self.caveats.append(("bad_charset", f"{vr} value: {warning.message}"))
                if vr == "PN" and _pn_differs(text, raw, self.encodings):
                    self._caveat_once(
                        "iso2022_name",
                        "a person name under ISO 2022 code extensions switches character set "
                        "without switching back before a ^ or = delimiter: decoded with the "
                        "delimiters resetting the character set, where pydicom gives other text",
                    )
        else:
            text = raw.decode("latin-1")
        return text.rstrip("\x00 ")

    def _numbers(self, raw: bytes, vr: str) -> str:
        size = _NUMERIC_SIZE[vr]
        count, extra = divmod(len(raw), size)
        if extra:
            raise _WrongLength(f"{vr} value of {len(raw)} bytes, not a multiple of {size}")
        if count == 1:
            return str(struct.unpack("<" + _NUMERIC_FORMAT[vr], raw)[0])
        return "\\".join(map(str, struct.unpack(f"<{count}{_NUMERIC_FORMAT[vr]}", raw)))

    def _value(self, raw: bytes, vr: str, tag: int) -> str | None:
        if vr in _NUMERIC_FORMAT:
            return self._numbers(raw, vr)
        if vr == "AT":
            if len(raw) % 4:
                raise _WrongLength(f"AT value of {len(raw)} bytes, not a multiple of 4")
            pairs = struct.unpack(f"<{len(raw) // 2}H", raw)
            return "\\".join(f"{pairs[i]:04X}{pairs[i + 1]:04X}" for i in range(0, len(pairs), 2))
        return self._text(raw, vr)

    def _set_charset(self, text: str) -> None:
        encodings, known = encodings_for(text)
        if not known:
            self.caveats.append(
                ("bad_charset", f"unknown SpecificCharacterSet {text!r}; default repertoire used")
            )
        self.encodings = encodings
        self.codec = encodings[0]
        self.simple_charset = len(encodings) == 1 and "2022" not in text
        self.default_charset = self.simple_charset and self.codec in ("iso8859", "latin_1")

    # -- structure ----------------------------------------------------------------------------
    def walk(self, pos: int, end: int | None, path: str, top: bool) -> int:
        """Read elements from ``pos`` until ``end`` (or an item delimiter when ``end`` is None).

        The top-level walk can be continued: when it runs out of bytes (:class:`_NeedMore`), the
        rows of every whole top-level element are kept and ``resume_pos`` is the start of the
        element it stopped in, where the next call goes on once more bytes are read. A long header
        is so walked once, not once per read.
        """
        buf = self.buf
        buflen = len(buf)
        explicit = self.explicit
        out = self.out
        tags = out.tag
        o_tag, o_vr, o_val = tags.append, out.vr.append, out.value.append
        o_len, o_path, o_cre = (
            out.value_length.append,
            out.seq_path.append,
            out.private_creator.append,
        )
        o_items = out.n_items.append
        row_limit = self.row_limit
        # The top level's private blocks outlive one call (the walk may be continued).
        creators: dict[int, str] = self.top_creators if top else {}
        prev_tag = self.top_prev_tag if top else -1  # tags ascend within a dataset (PS3.5 7.1)
        saved_charset: tuple[tuple[str, ...], str, bool, bool] | None = None
        limit = buflen if end is None else end
        while pos < limit:
            if top:
                self.resume_pos = pos
                self.top_prev_tag = prev_tag
            if len(tags) >= row_limit:
                self._too_many(pos)
            if pos + 8 > buflen:
                if self.complete:
                    raise DicomReadError(
                        "truncated", f"file ends inside an element header at byte {pos}"
                    )
                raise _NeedMore(pos + 8)
            if explicit:
                group, elem, vr_b, length = _EXPLICIT_HEADER.unpack_from(buf, pos)
                tag = group << 16 | elem
                if group == 0xFFFE:
                    length = _U32.unpack_from(buf, pos + 4)[0]
                    vr = ""
                    pos += 8
                else:
                    info = _EXPLICIT_VR.get(vr_b)
                    if info is None:
                        if (
                            tag == 0
                            and vr_b == b"\x00\x00"
                            and length == 0
                            and self._zeros(pos, top)
                        ):
                            return pos
                        raise Unsupported(
                            f"invalid VR {vr_b!r} for ({group:04X},{elem:04X}) at byte {pos}"
                        )
                    vr, long_length = info
                    if long_length:
                        if pos + 12 > buflen:
                            if self.complete:
                                raise DicomReadError(
                                    "truncated", f"file ends inside an element header at byte {pos}"
                                )
                            raise _NeedMore(pos + 12)
                        length = _U32.unpack_from(buf, pos + 8)[0]
                        pos += 12
                    else:
                        pos += 8
            else:
                group, elem, length = _IMPLICIT_HEADER.unpack_from(buf, pos)
                tag = group << 16 | elem
                if tag == 0 and length == 0 and self._zeros(pos, top):
                    return pos
                pos += 8
                vr = ""
            if group == 0xFFFE:
                if tag == ITEM_DELIM and end is None:
                    if saved_charset is not None:
                        self.encodings, self.codec, self.simple_charset, self.default_charset = (
                            saved_charset
                        )
                    return pos
                raise DicomReadError(
                    "bad_length", f"unexpected delimiter ({group:04X},{elem:04X}) at byte {pos - 8}"
                )
            if tag <= prev_tag:
                self._out_of_order(tag, prev_tag, path)
            prev_tag = tag
            creator: str | None = None
            if group & 1 and elem >= 0x1000:
                creator = creators.get(group << 8 | elem >> 8)
            encoded_un = vr == "UN"
            if encoded_un and length != UNDEFINED:
                # An explicit UN that the dictionaries know better (data that passed through a
                # system that did not know the tag): read it as its real VR, as pydicom does.
                vr = _known_vr_of_un(tag, creator, length)
            elif not vr:
                if creator is not None:
                    vr = private_vr(creator, tag)
                elif group & 1 and 0x10 <= elem <= 0xFF:
                    vr = "LO"
                else:
                    vr = public_vr(tag) if not group & 1 else "UN"
                    if vr == "US" and self.pixel_representation == 1 and _ambiguous(tag):
                        vr = "SS"  # 'US or SS' attributes follow PixelRepresentation
            if tag >= 0x7FE00008 and top and tag in PIXEL_TAGS:
                o_tag(tag), o_vr(vr), o_val(None), o_path(path), o_cre(None), o_items(None)
                if length == UNDEFINED:
                    o_len(None)
                else:
                    o_len(length)
                    self.pixel_offset = pos
                    self.pixel_length = length
                self.stop_offset = pos
                return pos
            if length == UNDEFINED or vr == "SQ":
                if vr == "SQ" or vr == "UN":
                    pos = self._sequence(pos, length, tag, path, creator, encoded_un)
                    continue
                raise DicomReadError(
                    "bad_length", f"undefined length for {vr} ({group:04X},{elem:04X})"
                )
            vend = pos + length
            if vend > limit:  # an item's end is within the bytes read, so one test covers both
                if end is not None:
                    raise DicomReadError(
                        "bad_length",
                        f"({group:04X},{elem:04X}) {vr} of {length} bytes runs past its item at byte {end}",
                    )
                if self.complete:
                    raise DicomReadError(
                        "truncated",
                        f"({group:04X},{elem:04X}) {vr} of {length} bytes runs past the end of the "
                        f"file at byte {buflen}",
                    )
                raise _NeedMore(vend)
            kind = _VR_KIND[vr]
            if kind == _PLAIN or (kind == _CHARSET_TEXT and self.default_charset):
                value = buf[pos:vend].decode("latin-1").rstrip("\x00 ")
                if not value.isascii() and (vr == "DS" or vr == "IS"):
                    self._caveat_once(
                        "invalid_value",
                        f"({group:04X},{elem:04X}) {vr} value holds bytes that are not ASCII: kept "
                        "as Latin-1 text, its typed column NULL (pydicom cannot read it as a number)",
                    )
            elif kind == _BINARY:
                value = None
            else:
                try:
                    value = self._value(buf[pos:vend], vr, tag)
                except _WrongLength as why:
                    # One malformed value does not cost the file: kept as UN bytes (what pydicom
                    # does with convert_wrong_length_to_UN) and reported. A private element of an
                    # implicit VR file had its VR guessed from a private dictionary: the guess was
                    # wrong, not the file, so there is nothing to report.
                    if explicit or not group & 1:
                        self.caveats.append(
                            ("invalid_value", f"({group:04X},{elem:04X}) {why}; kept as UN")
                        )
                    vr, value = "UN", None
            if elem <= 0xFF and value is not None:
                if group & 1 and elem >= 0x10:
                    creators[group << 8 | elem] = value
                elif tag == 0x00080005:
                    if not top and saved_charset is None:
                        # An item's own character set holds for that item only.
                        saved_charset = (
                            self.encodings,
                            self.codec,
                            self.simple_charset,
                            self.default_charset,
                        )
                    self._set_charset(value)
            elif tag == 0x00280103 and top and value and value.isdigit():
                self.pixel_representation = int(value)
            o_tag(tag), o_vr(vr), o_val(value), o_len(length), o_path(path), o_cre(creator)
            o_items(None)
            pos = vend
        if top:
            self.top_prev_tag = prev_tag  # the walk may go on from here with more bytes
        if end is None and not top:
            # An item of undefined length ran out of bytes before its delimiter.
            if self.complete:
                raise DicomReadError("truncated", f"file ends inside a sequence item ({path})")
            raise _NeedMore(buflen + 1)
        if end is not None and pos != end:
            raise DicomReadError(
                "bad_length", f"item content ends at byte {pos}, past its end {end}"
            )
        if saved_charset is not None:
            self.encodings, self.codec, self.simple_charset, self.default_charset = saved_charset
        return pos

    def _caveat_once(self, reason: str, message: str) -> None:
        """A caveat noted once per file (the first case of its kind says what happened)."""
        if not any(r == reason for r, _ in self.caveats):
            self.caveats.append((reason, message))

    def _out_of_order(self, tag: int, prev: int, path: str) -> None:
        where = f" in {path}" if path else ""
        if tag == prev:
            self._caveat_once(
                "duplicate_tag",
                f"({tag >> 16:04X},{tag & 0xFFFF:04X}) appears twice in a row{where}: both rows "
                "kept, typed columns take the last (pydicom keeps one)",
            )
        else:
            self._caveat_once(
                "tag_order",
                f"({tag >> 16:04X},{tag & 0xFFFF:04X}) follows ({prev >> 16:04X},{prev & 0xFFFF:04X})"
                f"{where}: tags out of order; rows kept as written, typed columns take the last of "
                "a repeated tag (pydicom sorts them and keeps one)",
            )

    def _too_many(self, pos: int) -> None:
        raise DicomReadError(
            "header_too_large",
            f"more than {self.max_elements} data elements and items (limit max_elements); "
            f"stopped at byte {pos}",
        )

    def _zeros(self, pos: int, top: bool) -> bool:
        """Zero bytes where an element should start (an empty ``(0000,0000)``): no header has them.

        After some of the dataset, at its top level, they are padding: the dataset ends there, with
        a caveat (True). Anywhere else (the dataset starts with them, or a sequence item holds
        them) the bytes cannot be a header: the read stops at once, before walking megabytes of
        zeros as 8-byte elements.
        """
        if top and self.dataset_start is not None and pos > self.dataset_start:
            self.caveats.append(
                ("zero_padding", f"zero bytes from byte {pos} on; the dataset is read up to there")
            )
            self.ended = True
            return True
        where = "a sequence item" if not top else "the dataset"
        raise DicomReadError(
            "zero_padding", f"{where} holds zero bytes at byte {pos} where an element should start"
        )

    def _sequence(
        self, pos: int, length: int, tag: int, path: str, creator: str | None, encoded_un: bool
    ) -> int:
        if self.depth >= self.max_depth:
            raise DicomReadError(
                "too_deep",
                f"sequence ({tag >> 16:04X},{tag & 0xFFFF:04X}) nested more than {self.max_depth} "
                f"levels deep (limit max_depth) at byte {pos}",
            )
        out = self.out
        row = len(out.tag)
        n_caveats = len(self.caveats)
        charset = (self.encodings, self.codec, self.simple_charset, self.default_charset)
        out.tag.append(tag)
        out.vr.append("SQ")
        out.value.append(None)
        out.value_length.append(None if length == UNDEFINED else length)
        out.seq_path.append(path)
        out.private_creator.append(creator)
        out.n_items.append(0)
        saved_explicit = self.explicit
        prefix = f"{path}/{tag:08X}" if path else f"{tag:08X}"
        buf = self.buf
        n = 0
        self.depth += 1
        try:
            if encoded_un:
                # A sequence written as UN is encoded implicit VR little endian (PS3.5 6.2.2).
                if not self._looks_sq_item(pos):
                    raise Unsupported(
                        f"UN ({tag >> 16:04X},{tag & 0xFFFF:04X}) of undefined length"
                    )
                self.explicit = False
            end = None if length == UNDEFINED else pos + length
            if end is not None and end > len(buf):
                if self.complete:
                    raise DicomReadError(
                        "truncated",
                        f"sequence ({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past end of file",
                    )
                raise _NeedMore(end)
            while end is None or pos < end:
                if pos + 8 > len(buf):
                    if self.complete:
                        raise DicomReadError("truncated", f"file ends inside sequence {tag:08X}")
                    raise _NeedMore(pos + 8)
                group, elem, ilen = _IMPLICIT_HEADER.unpack_from(buf, pos)
                itag = group << 16 | elem
                pos += 8
                if itag == SEQ_DELIM:
                    break
                if itag != ITEM:
                    raise DicomReadError(
                        "bad_length",
                        f"expected an item in sequence {tag:08X}, found ({group:04X},{elem:04X})",
                    )
                if len(out.tag) + n >= self.row_limit:
                    self._too_many(pos)  # a flood of empty items adds no rows; count them too
                item_path = f"{prefix}[{n}]"
                n += 1
                if ilen == UNDEFINED:
                    pos = self.walk(pos, None, item_path, False)
                else:
                    iend = pos + ilen
                    if end is not None and iend > end:
                        raise DicomReadError(
                            "bad_length", f"item of sequence {tag:08X} runs past the sequence"
                        )
                    if iend > len(buf):
                        if self.complete:
                            raise DicomReadError(
                                "truncated", f"item of sequence {tag:08X} runs past end of file"
                            )
                        raise _NeedMore(iend)
                    pos = self.walk(pos, iend, item_path, False)
        except _NeedMore:
            # The walk goes on later from before this sequence: drop what it read of it, and
            # leave the character set as it was before (an item may have set its own).
            out.truncate(row)
            del self.caveats[n_caveats:]
            self.encodings, self.codec, self.simple_charset, self.default_charset = charset
            raise
        finally:
            self.explicit = saved_explicit
            self.depth -= 1
        out.n_items[row] = n
        return pos

    def _looks_sq_item(self, pos: int) -> bool:
        buf = self.buf
        if pos + 4 > len(buf):
            return True  # let the item loop report truncation or ask for more bytes
        group, elem = struct.unpack_from("<HH", buf, pos)
        return group == 0xFFFE and elem in (0xE000, 0xE0DD)


@cache
def _known_vr_of_un(tag: int, creator: str | None, length: int) -> str:
    """The VR pydicom gives an element encoded explicitly as UN (``replace_un_with_known_vr``)."""
    if tag >> 16 & 1:
        if 0x10 <= tag & 0xFFFF <= 0xFF:
            return "LO"  # a private creator
        return private_vr(creator, tag) if creator is not None else "UN"
    if length >= 0xFFFF:
        return "UN"
    from pydicom.datadict import dictionary_VR

    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return "UN"
    return public_vr(tag) if vr != "NONE" else "UN"


@cache
def _ambiguous(tag: int) -> bool:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag) in ("US or SS", "US or SS or OW")
    except KeyError:
        return False


def _python_walk(walker: _Walker, pos: int, end: int | None, path: str, top: bool) -> int:
    return walker.walk(pos, end, path, top)


#: The walk of one dataset: the compiled walker when built (chosen at the end of this module by
#: :func:`curation.crawler.compiled.select`), else :meth:`_Walker.walk`.
_walk: Callable[[_Walker, int, int | None, str, bool], int] = _python_walk


def _is_explicit_at(buf: bytes, pos: int) -> bool:
    return len(buf) >= pos + 6 and buf[pos + 4 : pos + 6] in _ALL_VRS


def _plausible_start(buf: bytes) -> bool:
    """A dataset without preamble: a low group, little endian, at offset 0."""
    if len(buf) < 8:
        return False
    group, elem = struct.unpack_from("<HH", buf, 0)
    return (
        group in (0x0002, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028)
        and elem < 0x1000
        and (_is_explicit_at(buf, 0) or _U32.unpack_from(buf, 4)[0] < 0x10000)
    )


def sniff(head: bytes) -> str | None:
    """``'preamble'``, ``'raw'`` (a dataset starting at byte 0) or ``None`` (not DICOM)."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "preamble"
    if _plausible_start(head):
        return "raw"
    return None


def read_header_bytes(
    buf: bytes,
    complete: bool,
    out: ElementColumns | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Header:
    """Read the header from ``buf`` (the first bytes of a file, or all of it when ``complete``).

    Raises
    ------
    _NeedMore
        When ``complete`` is false and the header runs past ``buf``.
    Unsupported
        For encodings the fast reader leaves to pydicom.
    DicomReadError
        When the bytes are not a readable DICOM header (the reason code says why).
    """
    out = ElementColumns() if out is None else out
    start = len(out)
    try:
        return _HeaderRead(out, limits).feed(buf, complete)
    except BaseException:
        out.truncate(start)
        raise


class _HeaderRead:
    """One header read from a buffer that grows: each :meth:`feed` walks only what is new.

    The file meta information is read whole (it is small; when it runs past the buffer it is read
    again from the start); the dataset's top-level walk is continued from the start of the
    element it stopped in (see :meth:`_Walker.walk`).
    """

    def __init__(self, out: ElementColumns, limits: Limits) -> None:
        self.out = out
        self.limits = limits
        self.start = len(out)
        self.transfer_syntax: str | None = None
        self.media_class: str | None = None
        self.meta: _Walker | None = None
        self.walker: _Walker | None = None

    def feed(self, buf: bytes, complete: bool) -> Header:
        """Go on reading with ``buf`` (the same bytes as before, and more); see read_header_bytes."""
        walker = self.walker
        if walker is None:
            walker = self.walker = self._begin(buf, complete)
        else:
            walker.buf = buf
            walker.complete = complete
        pos = _walk(walker, walker.resume_pos, None, "", True)
        walker.resume_pos = pos
        if walker.stop_offset is None and not walker.ended and not complete:
            raise _NeedMore(len(buf) + 1)  # no pixel data seen yet: the dataset may go on
        assert self.meta is not None
        out, start = self.out, self.start
        sop = None
        for i in range(start, len(out)):
            if out.tag[i] == 0x00080018 and not out.seq_path[i]:
                sop = out.value[i]
                break
        return Header(
            elements=out,
            start=start,
            transfer_syntax=self.transfer_syntax,
            sop_instance_uid=sop,
            media_storage_sop_class=self.media_class,
            pixel_data_offset=walker.pixel_offset,
            pixel_data_length=walker.pixel_length,
            encapsulated_offset=walker.stop_offset
            if walker.stop_offset is not None and walker.pixel_length is None
            else None,
            caveats=self.meta.caveats + walker.caveats,
        )

    def _begin(self, buf: bytes, complete: bool) -> _Walker:
        """Sniff the bytes and read the file meta information: the walker of the dataset."""
        kind = sniff(buf)
        if kind is None:
            if len(buf) < 132 and not complete:
                raise _NeedMore(132)
            raise DicomReadError("not_dicom", "no DICM preamble and no plausible dataset start")
        try:
            return self._read_meta(buf, complete, kind)
        except _NeedMore:
            self.out.truncate(self.start)  # read again, whole, with more bytes
            raise

    def _read_meta(self, buf: bytes, complete: bool, kind: str) -> _Walker:
        out, start, limits = self.out, self.start, self.limits
        pos = 132 if kind == "preamble" else 0
        transfer_syntax: str | None = None
        media_class: str | None = None
        meta = self.meta = _Walker(buf, complete, True, out, limits, start)
        if kind == "preamble" or (len(buf) >= 2 and buf[0:2] == b"\x02\x00"):
            # File meta group: always explicit VR little endian. Its group length, when present and
            # right, lets one walk read it all; then (or else) element by element until group != 2.
            if buf[pos : pos + 8] == b"\x02\x00\x00\x00UL\x04\x00" and len(buf) >= pos + 12:
                group_end = pos + 12 + _U32.unpack_from(buf, pos + 8)[0]
                if group_end + 2 <= len(buf) and buf[group_end : group_end + 2] != b"\x02\x00":
                    mark = len(out)
                    try:
                        _walk(meta, pos, group_end, "", True)
                        pos = group_end
                    except DicomReadError:
                        out.truncate(mark)  # a wrong group length: read element by element instead
            while True:
                if pos + 8 > len(buf):
                    if complete:
                        raise DicomReadError(
                            "truncated", "file ends inside the file meta information"
                        )
                    raise _NeedMore(pos + 8)
                group = _U16.unpack_from(buf, pos)[0]
                if group != 0x0002:
                    break
                if not _is_explicit_at(buf, pos):
                    raise Unsupported("file meta information is not explicit VR")
                vr_b = buf[pos + 4 : pos + 6]
                hdr = 12 if vr_b in _LONG_VRS else 8
                length = (
                    _U32.unpack_from(buf, pos + 8)[0]
                    if hdr == 12
                    else _U16.unpack_from(buf, pos + 6)[0]
                )
                _walk(meta, pos, pos + hdr + length, "", True)
                pos += hdr + length
            for tag, value in zip(out.tag[start:], out.value[start:], strict=True):
                if tag == 0x00020010:
                    transfer_syntax = (value or "").rstrip("\x00 ")
                elif tag == 0x00020002:
                    media_class = value
        if transfer_syntax is None:
            explicit = _is_explicit_at(buf, pos)
        elif transfer_syntax == IMPLICIT_LE:
            explicit = False
        elif transfer_syntax in (EXPLICIT_BE, DEFLATED):
            raise Unsupported(f"transfer syntax {transfer_syntax}")
        else:
            explicit = True
        if pos + 8 > len(buf) and not complete:
            raise _NeedMore(pos + 8)  # the checks below need the first element
        if buf[pos : pos + 8] == _ZEROS:
            raise DicomReadError(
                "zero_padding", f"the dataset starts with zero bytes at byte {pos}, not an element"
            )
        if explicit != _is_explicit_at(buf, pos) and pos + 8 <= len(buf):
            # Declared and actual encodings disagree; pydicom knows how to cope.
            raise Unsupported("dataset encoding differs from its transfer syntax")
        self.transfer_syntax, self.media_class = transfer_syntax, media_class
        walker = _Walker(buf, complete, explicit, out, limits, start)
        walker.resume_pos = walker.dataset_start = pos
        return walker


#: First read of a file. Most CT/MR headers fit; longer ones (Siemens CSA, enhanced multi-frame)
#: cost one more read. Reading 64 kB instead measured ~50 us more per file, for nothing.
INITIAL_READ = 16 * 1024


def _too_large(limits: Limits, what: str) -> DicomReadError:
    return DicomReadError(
        "header_too_large",
        f"the header goes on past {limits.max_header_bytes} bytes{what} (limit max_header_bytes)",
    )


def _read_gzipped(f: BinaryIO, first: bytes, out: ElementColumns | None, limits: Limits) -> Header:
    """Read the header of a gzip-wrapped file, decompressing only as far as the header goes.

    Decompressing a whole 500 kB CT file costs ~2 ms, more than reading 20 plain headers; the
    header needs its first few kB. The price: a gzip file cut inside its pixel data is not noticed
    here (the pixel step reports it), where a plain file's is. Nothing past ``max_header_bytes``
    is ever decompressed (a small file may inflate to gigabytes).
    """
    out = ElementColumns() if out is None else out
    start = len(out)
    reader = _HeaderRead(out, limits)
    cap = limits.max_header_bytes
    decoder = zlib.decompressobj(wbits=31)  # 31: gzip framing
    compressed = first
    data = b""
    want = min(INITIAL_READ, cap)
    try:
        while True:
            if want > len(data) and compressed:
                try:
                    # max_length > 0 always: 0 would mean "no limit" to zlib.
                    data += decoder.decompress(compressed, want - len(data))
                except zlib.error as exc:
                    raise DicomReadError("bad_gzip", f"not valid gzip: {exc}") from exc
                compressed = decoder.unconsumed_tail
            if len(data) < want and not compressed and not decoder.eof:
                more = f.read(64 * 1024)
                if more:
                    compressed = more
                    continue
                raise DicomReadError("bad_gzip", "gzip stream ends early")
            complete = decoder.eof and not compressed
            if not data:
                raise DicomReadError("zero_byte", "the gzip file holds no data")
            try:
                return reader.feed(data, complete)
            except _NeedMore as more_needed:
                if len(data) >= cap:
                    raise _too_large(limits, " once decompressed") from None
                want = min(max(more_needed.end + INITIAL_READ, 2 * len(data)), cap)
    except BaseException:
        out.truncate(start)
        raise


def read_header(
    path: str, out: ElementColumns | None = None, limits: Limits = DEFAULT_LIMITS
) -> tuple[Header, bool]:
    """Read a file's header with the fast reader: ``(header, gzipped)``.

    Reads the first 16 kB, then more only when the header runs past them (never more than
    ``limits.max_header_bytes``); gzip-wrapped files are decompressed as far as the header goes.
    Raises :class:`Unsupported` for files the fast reader leaves to pydicom, and
    :class:`~curation.errors.DicomReadError` for files that are not readable DICOM.
    """
    # Unbuffered: the reads are large and few; Python's buffer would only copy them once more.
    with open(path, "rb", buffering=0) as f:
        cap = limits.max_header_bytes
        first = min(INITIAL_READ, cap)
        data = f.read(first)
        if not data:
            raise DicomReadError("zero_byte", "the file is empty")
        if data[:2] == b"\x1f\x8b":
            return _read_gzipped(f, data, out, limits), True
        complete = len(data) < first
        out = ElementColumns() if out is None else out
        start = len(out)
        reader = _HeaderRead(out, limits)
        try:
            while True:
                try:
                    header = reader.feed(data, complete)
                    if header.encapsulated_offset is not None:
                        _check_fragments(f, header, limits)
                    return header, False
                except _NeedMore as more:
                    if len(data) >= cap:
                        raise _too_large(limits, "") from None
                    # Read what the walk asked for plus a margin, so a long header costs few
                    # reads; the walk goes on where it stopped (it does not start over).
                    want = min(max(more.end + INITIAL_READ, 2 * len(data)), cap) - len(data)
                    extra = f.read(want)
                    complete = len(extra) < want
                    data += extra
        except BaseException:
            out.truncate(start)
            raise


_SEQ_DELIM_BYTES = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _check_fragments(f: BinaryIO, header: Header, limits: Limits) -> None:
    """Note a caveat when encapsulated pixel data is cut short by the end of the file.

    Encapsulated pixel data ends with a sequence delimiter, usually the file's last 8 bytes: one
    small read confirms it. Otherwise the fragment items are walked by their 8-byte headers (a few
    reads per frame) to find whether one runs past the end; at most ``max_elements`` of them (a
    file of millions of empty fragments is left unchecked rather than walked for minutes).
    """
    size = f.seek(0, 2)
    f.seek(max(0, size - 8))
    if f.read(8) == _SEQ_DELIM_BYTES:
        return
    pos = header.encapsulated_offset
    assert pos is not None
    for _ in range(limits.max_elements):
        f.seek(pos)
        item = f.read(8)
        if len(item) < 8:
            header.caveats.append(
                (
                    "truncated",
                    f"encapsulated pixel data ends at byte {size} without its delimiter; header cataloged",
                )
            )
            return
        group, elem, length = _IMPLICIT_HEADER.unpack(item)
        if (group, elem) == (0xFFFE, 0xE0DD):
            return  # delimiter found; something else follows it
        if (group, elem) != (0xFFFE, 0xE000) or pos + 8 + length > size:
            header.caveats.append(
                (
                    "truncated",
                    f"pixel data fragment at byte {pos} runs past the end of the file ({size} bytes); header cataloged",
                )
            )
            return
        pos += 8 + length


# Last, once every helper the compiled walker is handed exists.
from curation.crawler.compiled import select as _select_walker  # noqa: E402

_select_walker()
