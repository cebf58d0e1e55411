"""The small error hierarchy of curation.

Every message names the thing that was wrong (a file, a tag, a rule, a table) and why.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class CurationError(Exception):
    """Base of every error curation raises on purpose."""


class InputError(CurationError):
    """A path, option or spec given by the user cannot be used."""


class CatalogError(CurationError):
    """The catalog database is missing, locked, or does not hold what a step needs."""


class OutputError(CurationError):
    """An output file or folder cannot be written (read-only folder, disk full, not a folder).

    The message names the path; ``curation`` exits 5.
    """

    def __init__(self, path: str | object, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: cannot write: {reason}")


def output_error(path: str | object, exc: BaseException) -> OutputError:
    """An :class:`OutputError` for ``path`` from the operating-system (or writer) error ``exc``."""
    if isinstance(exc, FileExistsError | NotADirectoryError) and (path or exc.filename):
        # A file stands where a folder is needed: say which, not "File exists".
        target = Path(str(path if path is not None else exc.filename))
        blocker = next((q for q in (target, *target.parents) if q.exists()), None)
        if blocker is not None and not blocker.is_dir():
            if blocker == target:
                return OutputError(target, "it is a file, not a folder")
            return OutputError(target, f"its parent {blocker} is not a folder")
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc)
        where = exc.filename if exc.filename is not None else path
    else:
        reason, where = (str(exc).strip().splitlines() or [type(exc).__name__])[0], path
    return OutputError(where, reason)


@contextmanager
def writing(path: str | object, *also: type[BaseException]) -> Iterator[None]:
    """Turn an operating-system error (or one of ``also``, a writer's own) while writing ``path``
    into an :class:`OutputError` naming it."""
    kinds: tuple[type[BaseException], ...] = (OSError, *also)
    try:
        yield
    except OutputError:
        raise
    except kinds as exc:
        raise output_error(path, exc) from exc


class DicomReadError(CurationError):
    """A file could not be read as DICOM.

    ``reason`` is a stable code stored in ``crawl_errors.reason`` (see :data:`READ_ERROR_REASONS`).
    """

    def __init__(self, reason: str, message: str, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message


#: Stable reason codes of ``crawl_errors.reason``, with what each means.
READ_ERROR_REASONS: dict[str, str] = {
    "zero_byte": "the file is empty",
    "not_dicom": "no DICM preamble and no plausible dataset start",
    "truncated": "the file ends inside an element, a sequence or the header",
    "bad_length": "an element or sequence length is impossible (runs past its container)",
    "invalid_vr": "an explicit-VR element carries a VR that DICOM does not define",
    "invalid_value": "a value cannot be decoded for its VR",
    "bad_charset": "a text value cannot be decoded with the declared SpecificCharacterSet",
    "duplicate_tag": "a data element appears twice in a row in one dataset: both rows kept, typed "
    "columns take the last (header cataloged)",
    "tag_order": "data elements of a dataset are not in ascending tag order: rows kept as written "
    "(header cataloged)",
    "iso2022_name": "a person name under ISO 2022 code extensions that pydicom decodes to other "
    "text (a code element still designated at a ^ or =; header cataloged)",
    "bad_gzip": "a .gz file is not valid gzip",
    "header_too_large": "the header needs more bytes or data elements than the crawl's limits "
    "(max_header_bytes, max_elements): not read again until the file changes",
    "too_deep": "sequences nested deeper than the crawl's limit (max_depth)",
    "zero_padding": "zero bytes where a data element should start: the dataset ends there "
    "(header cataloged), or, where the dataset or an item starts with them, it cannot be a header",
    "reader_died": "the reader process died reading the file, also when it read it alone "
    "(e.g. the kernel's out-of-memory killer): not read again until the file changes",
    "permission_denied": "the file cannot be opened for reading",
    "vanished": "the file disappeared between listing and reading",
    "os_error": "another operating-system error while reading",
    "dicomdir": "a DICOMDIR media directory, not an instance (skipped)",
    "no_sop_instance_uid": "the dataset has no SOPInstanceUID, so it cannot be an instance",
    "bad_dicom_json": "a PACS's DICOM JSON for an instance is not valid, or contradicts what was "
    "asked for (an instance of another series, no SOP Instance UID)",
    "pacs_error": "a PACS request failed after retries (the URL and status are in the message): "
    "a series' metadata (asked for again by the next crawl) or a bulk data value (length NULL)",
    "internal": "a bug in curation: please report it with the file",
}
