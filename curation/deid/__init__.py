"""De-identification: a cohort's DICOM files rewritten under a PS3.15 profile, verifiably clean.

- :mod:`curation.deid.standard` — PS3.15 Table E.1-1 (shipped as data) and its action codes;
- :mod:`curation.deid.profile` — profiles (YAML data: options, overrides, safe-private allow-list,
  burned-in text settings), validated on load;
- :mod:`curation.deid.keys` — keyed pseudonyms, UIDs and date shifts;
- :mod:`curation.deid.actions` — the actions applied to a dataset, nested sequences included;
- :mod:`curation.deid.pixels` — burned-in text: OCR (Tesseract) and masking;
- :mod:`curation.deid.run` — a cohort's files de-identified, the manifest, the audit tables;
- :mod:`curation.deid.scan` — the leak scanner: original identifiers searched in output bytes.
"""

from curation.deid.profile import Profile, load_profile
from curation.deid.run import DeidResult, deidentify

__all__ = ["DeidResult", "Profile", "deidentify", "load_profile"]
