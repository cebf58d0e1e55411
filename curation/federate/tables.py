"""The tables ``curation federate --db`` writes: a federation's sites, their counts, its findings.

They live in the federation's own DuckDB file, never in a site's catalog; they hold only what the
site summaries hold (suppressed counts stay NULL), so the file can be shared like the summaries.
"""

from __future__ import annotations

from curation.schema import Table, col

FEDERATED_SITES = Table(
    "federated_sites",
    "site summary of a federation",
    "One row per site summary read by `curation federate`: where it came from and its totals.",
    (
        col("site", "VARCHAR", "The site's name (curation summary --site)"),
        col("source", "VARCHAR", "The summary file as given on the command line"),
        col("curation_version", "VARCHAR", "Version of curation that wrote the summary"),
        col("min_count", "INTEGER", "The site's k: counts under it are suppressed (NULL)"),
        col("n_patients", "BIGINT", "Patients at the site; NULL if suppressed"),
        col("n_studies", "BIGINT", "Studies at the site; NULL if suppressed"),
        col("n_series", "BIGINT", "Series at the site; NULL if suppressed"),
        col("n_instances", "BIGINT", "Instances at the site; NULL if suppressed"),
        col(
            "cohort_spec_sha256",
            "VARCHAR",
            "SHA-256 of the cohort spec whose attrition the summary holds; NULL if none",
        ),
    ),
)

FEDERATED_CELLS = Table(
    "federated_cells",
    "cell of a site's distribution",
    "Every cell of every distribution of every site summary, suppressed ones included (n NULL); "
    "a distribution's total and hidden sum are repeated on each of its rows.",
    (
        col("site", "VARCHAR", "The site"),
        col(
            "what",
            "VARCHAR",
            "The distribution: an attribute of docs/federated.md, Modality, "
            "qc, label or label_vendor",
        ),
        col("grp", "JSON", 'The group the distribution counts within (e.g. {"Modality": "CT"})'),
        col(
            "value",
            "VARCHAR",
            "The cell's value (a category or a bin label); NULL for a "
            "distribution shown without cells (withheld, or an open vocabulary's hidden cells)",
        ),
        col("n", "BIGINT", "Series in the cell; NULL when suppressed"),
        col("suppressed", "BOOLEAN", "The cell's count is suppressed"),
        col("n_total", "BIGINT", "Total of the distribution"),
        col("n_hidden", "BIGINT", "Sum of the distribution's suppressed cells"),
        col("vocabulary", "VARCHAR", "closed (suppressed cells are named) or open (not)"),
    ),
)

FEDERATED_FINDINGS = Table(
    "federated_findings",
    "cross-site heterogeneity finding",
    "The heterogeneity rules' logic applied to the sites' distributions (docs/federated.md).",
    (
        col("rule_id", "VARCHAR", "The rule whose logic found it (cohort.site_shortcut, ...)"),
        col(
            "certainty",
            "VARCHAR",
            "certain: holds whatever the suppressed counts are; possible: holds for some of them",
        ),
        col("Modality", "VARCHAR", "The modality compared; NULL when not per modality"),
        col("attribute", "VARCHAR", "The attribute compared"),
        col("value", "VARCHAR", "The value or bin found"),
        col("site", "VARCHAR", "The site it is about; NULL for the federation as a whole"),
        col("message", "VARCHAR", "What was found, in words, with counts as intervals"),
    ),
)

FEDERATE_TABLES = (FEDERATED_SITES, FEDERATED_CELLS, FEDERATED_FINDINGS)
