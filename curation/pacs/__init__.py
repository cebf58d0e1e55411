"""A PACS as a source of the catalog: DICOMweb (QIDO-RS, WADO-RS) and DIMSE (C-FIND, C-GET, C-MOVE).

- :mod:`curation.pacs.source` — naming a PACS (``dicomweb+http(s)://``, ``dimse://AET@HOST:PORT``),
  credentials from an environment variable or a file, :class:`~curation.pacs.source.PacsError`
- :mod:`curation.pacs.dicomweb` — the HTTP client (pooled, retries with backoff)
- :mod:`curation.pacs.dicomjson` — DICOM JSON as the crawler's element rows
- :mod:`curation.pacs.crawl` — a DICOMweb crawl into the catalog, incremental
- :mod:`curation.pacs.dimse` — C-FIND into ``pacs_studies``/``pacs_series`` (series level)
- :mod:`curation.pacs.retrieve` — a cohort's series into a folder (C-GET, C-MOVE or WADO-RS)
- :mod:`curation.pacs.tables` — ``pacs_studies``, ``pacs_series``, ``retrievals``
"""
