"""The keyed values de-identification puts in place of identifiers: pseudonyms, UIDs, date shifts.

Every one is a keyed hash under the cohort's pseudonym key (:mod:`curation.pseudonym`, the one
policy): the same identifier gives the same replacement in every file, run and incremental batch,
and nothing about it can be linked back without the key. PatientID and PatientName become the
manifest's ``patient_key``, so a de-identified file and its manifest row agree.
"""

from __future__ import annotations

from datetime import date, timedelta

from curation import pseudonym


def patient_key(patient_id: str, key: bytes) -> str:
    """The patient's pseudonym: the manifest's ``patient_key`` (HMAC of PatientID)."""
    return pseudonym.pseudonym(patient_id, key)


def study_key(study_uid: str, key: bytes) -> str:
    """The study's pseudonym: the manifest's ``study_key``."""
    return pseudonym.pseudonym(study_uid, key)


def series_key(series_uid: str, key: bytes) -> str:
    """The series' pseudonym: the manifest's ``series_key``."""
    return pseudonym.pseudonym(series_uid, key)


def instance_key(sop_uid: str, key: bytes) -> str:
    """The instance's pseudonym (names its de-identified file)."""
    return pseudonym.pseudonym(sop_uid, key)


def new_uid(value: str, key: bytes) -> str:
    """The remapped UID of ``value`` (``2.25.<int>``, see :func:`curation.pseudonym.uid`)."""
    return pseudonym.uid(value.strip().rstrip("\0"), key)


def shift_days(patient_id: str, key: bytes, max_days: int, keep_weekday: bool) -> int:
    """Days a patient's dates move back: between 1 and ``max_days``, keyed by PatientID.

    Always into the past (a shifted date is never in the future); with ``keep_weekday`` a whole
    number of weeks (at least one), so a Monday stays a Monday.
    """
    h = int(pseudonym.pseudonym("date-shift:" + patient_id, key), 16)
    if keep_weekday:
        weeks = max(1, max_days // 7)
        return 7 * (h % weeks + 1)
    return h % max_days + 1


def shift_date(value: str, days: int) -> str | None:
    """The DA ``value`` (``YYYYMMDD``) moved ``days`` back; None when it is not a valid date."""
    text = value.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        d = date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None
    try:
        return (d - timedelta(days=days)).strftime("%Y%m%d")
    except OverflowError:
        return None


def shift_datetime(value: str, days: int) -> str | None:
    """The DT ``value`` with its date part moved ``days`` back (time and offset kept); None when
    it does not start with a valid ``YYYYMMDD``."""
    text = value.strip()
    day = shift_date(text[:8], days)
    return None if day is None else day + text[8:]
