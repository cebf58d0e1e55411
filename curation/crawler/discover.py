"""Finding the files under the crawled roots: what exists, how big, how recent.

Only ``stat`` is done here (``os.scandir`` gives directory types for free), so a crawl of an
unchanged tree costs one stat per file. Symlinked directories are followed once: a cycle or a
second link to the same directory is not walked again. Names are not trusted to tell DICOM from
other files (the reader sniffs the bytes), except for a few file types that are never DICOM.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

log = logging.getLogger("curation.crawler")

#: File names a DICOM export carries beside its images; reported as skipped, not as errors.
NEVER_DICOM_SUFFIXES = (
    ".txt", ".md", ".json", ".xml", ".html", ".htm", ".csv", ".tsv", ".parquet", ".py",
    ".nii", ".nii.gz", ".bval", ".bvec", ".png", ".jpg", ".jpeg", ".pdf", ".zip", ".yaml",
    ".yml", ".toml", ".ipynb", ".duckdb", ".wal",
)  # fmt: skip
NEVER_DICOM_NAMES = ("LICENSE", "README", "MANIFEST", ".DS_Store", "Thumbs.db")


@dataclass
class Listing:
    """What a walk of the roots found."""

    paths: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    mtimes_ns: list[int] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (path, reason, message)
    n_duplicate_links: int = 0

    def __len__(self) -> int:
        return len(self.paths)


def never_dicom(name: str) -> bool:
    """True for names of files a DICOM tree carries that are never DICOM (licenses, sidecars)."""
    lower = name.lower()
    return lower.endswith(NEVER_DICOM_SUFFIXES) or name.startswith(NEVER_DICOM_NAMES)


def walk(roots: Iterable[str]) -> Listing:
    """Stat every regular file under ``roots`` (files or directories), depth first, sorted."""
    out = Listing()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()

    def add_file(path: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if key in seen_files:
            out.n_duplicate_links += 1  # the same file reached through a second link
            return
        seen_files.add(key)
        out.paths.append(path)
        out.sizes.append(st.st_size)
        out.mtimes_ns.append(st.st_mtime_ns)

    def visit(directory: str) -> None:
        try:
            st = os.stat(directory)
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                log.debug("not walking %s again (symlink cycle or second link)", directory)
                return
            seen_dirs.add(key)
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError as exc:
            out.problems.append(
                (directory, "permission_denied", f"directory cannot be listed: {exc.strerror}")
            )
            return
        except FileNotFoundError:
            out.problems.append((directory, "vanished", "directory disappeared during the walk"))
            return
        except OSError as exc:
            out.problems.append((directory, "os_error", f"directory cannot be listed: {exc}"))
            return
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=True):
                    visit(entry.path)
                elif entry.is_file(follow_symlinks=True):
                    add_file(entry.path, entry.stat(follow_symlinks=True))
            except FileNotFoundError:
                continue  # vanished between listing and stat: it is simply not there any more
            except OSError as exc:
                out.problems.append((entry.path, "os_error", f"cannot stat: {exc}"))

    for root in roots:
        root = os.path.abspath(root)
        if os.path.isdir(root):
            visit(root)
        elif os.path.isfile(root):
            add_file(root, os.stat(root))
        else:
            out.problems.append((root, "vanished", "path does not exist"))
    return out


def text_path(path: str) -> tuple[str, bytes | None]:
    """A path as catalog text, and its bytes when they are not UTF-8 (else None).

    File names are bytes; one that is not valid UTF-8 (``caf\\xe9.dcm`` from a Latin-1 system)
    reaches Python with surrogate escapes, which no UTF-8 text column takes. Its text shows each
    such byte as ``\\xNN``; the bytes are kept beside it, so the file can be opened again.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(path)
        return raw.decode("utf-8", "backslashreplace"), raw
    return path, None


def file_id(path: str) -> int:
    """Stable 64-bit id of a path (the same path always gets the same id)."""
    return int.from_bytes(
        hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little"
    )
