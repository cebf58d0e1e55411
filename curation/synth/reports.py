"""Radiology report texts whose findings carry known labels.

Each report mentions a few findings of its study type's vocabulary, each stated in one of four ways:
``positive`` ("There is a small right pleural effusion."), ``negated`` ("No evidence of
pneumothorax."), ``uncertain`` ("Possible small pulmonary nodule.") or ``historical`` ("Known
emphysema, unchanged since the prior."). Findings not mentioned have no label (not "negated"). The
label, the finding code and the exact sentence are returned so label extraction can be scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: study type -> finding code -> phrase used in the text
VOCABULARY: dict[str, dict[str, str]] = {
    "ct_chest": {
        "pneumothorax": "pneumothorax",
        "pleural_effusion": "pleural effusion",
        "pulmonary_nodule": "pulmonary nodule",
        "consolidation": "consolidation",
        "emphysema": "emphysema",
        "cardiomegaly": "cardiomegaly",
        "lymphadenopathy": "mediastinal lymphadenopathy",
        "pulmonary_embolism": "pulmonary embolism",
        "rib_fracture": "rib fracture",
    },
    "ct_head": {
        "intracranial_hemorrhage": "intracranial hemorrhage",
        "acute_infarct": "acute infarct",
        "mass_effect": "mass effect",
        "midline_shift": "midline shift",
        "skull_fracture": "skull fracture",
        "hydrocephalus": "hydrocephalus",
        "small_vessel_disease": "chronic small vessel ischemic change",
    },
    "mr_brain": {
        "acute_infarct": "acute infarct",
        "white_matter_lesions": "white matter hyperintensities",
        "mass": "enhancing mass",
        "microhemorrhage": "microhemorrhages",
        "hydrocephalus": "hydrocephalus",
        "restricted_diffusion": "restricted diffusion",
    },
}

LABELS = ("positive", "negated", "uncertain", "historical")
_LABEL_WEIGHTS = (0.3, 0.42, 0.15, 0.13)

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "positive": (
        "There is {mod}{p}.",
        "{Mod}{p} is present{loc}.",
        "Findings consistent with {mod}{p}{loc}.",
        "New {mod}{p}{loc}.",
    ),
    "negated": (
        "No evidence of {p}.",
        "No {p}.",
        "Negative for {p}.",
        "{P} is not seen.",
        "There is no {p}{loc}.",
        "Without {p}.",
    ),
    "uncertain": (
        "Possible {mod}{p}{loc}.",
        "Cannot exclude {mod}{p}.",
        "Findings may represent {mod}{p}.",
        "Questionable {p}{loc}, correlate clinically.",
        "Suspicious for {mod}{p}.",
    ),
    "historical": (
        "Known {p}, unchanged compared with the prior examination.",
        "History of {p}.",
        "Previously described {p}{loc}, stable.",
        "Status post treatment of {p}.",
    ),
}
_MODIFIERS = ("small ", "moderate ", "mild ", "large ", "")
_LOCATIONS = {
    "ct_chest": (
        " in the right lower lobe",
        " in the left upper lobe",
        " on the right",
        " on the left",
        "",
    ),
    "ct_head": (
        " in the left frontal lobe",
        " in the right parietal lobe",
        " in the posterior fossa",
        "",
    ),
    "mr_brain": (
        " in the left centrum semiovale",
        " in the right basal ganglia",
        " periventricular",
        "",
    ),
}
_EXAMS = {
    "ct_chest": "CT CHEST {contrast}",
    "ct_head": "CT HEAD WITHOUT CONTRAST",
    "mr_brain": "MRI BRAIN WITHOUT AND WITH CONTRAST",
}
_HISTORY = (
    "Cough and shortness of breath.",
    "Follow-up.",
    "Headache.",
    "Fall.",
    "Weakness.",
    "Staging.",
)


@dataclass(frozen=True)
class FindingLabel:
    """One mentioned finding: its code, its label and the sentence that states it."""

    finding: str
    label: str
    sentence: str
    section: str


@dataclass(frozen=True)
class Report:
    """A report text and the labels of the findings it mentions."""

    text: str
    findings: tuple[FindingLabel, ...]


def make_report(
    rng: np.random.Generator,
    study_type: str,
    *,
    contrast: bool,
    patient_name: str,
    patient_id: str,
    study_date: str,
    physician: str,
    include_header_phi: bool,
) -> Report:
    """Write a report for a study of ``study_type`` (``ct_chest``, ``ct_head`` or ``mr_brain``)."""
    vocab = VOCABULARY[study_type]
    codes = list(vocab)
    n = int(rng.integers(3, min(6, len(codes)) + 1))
    chosen = [codes[i] for i in sorted(rng.choice(len(codes), size=n, replace=False))]
    findings: list[FindingLabel] = []
    sentences: list[str] = []
    for code in chosen:
        label = str(rng.choice(LABELS, p=_LABEL_WEIGHTS))
        template = str(rng.choice(_TEMPLATES[label]))
        phrase = vocab[code]
        mod = str(rng.choice(_MODIFIERS)) if label in ("positive", "uncertain") else ""
        loc = str(rng.choice(_LOCATIONS[study_type]))
        sentence = template.format(
            p=phrase, P=phrase.capitalize(), mod=mod, Mod=mod.capitalize(), loc=loc
        )
        sentence = sentence[0].upper() + sentence[1:]
        sentences.append(sentence)
        findings.append(FindingLabel(code, label, sentence, "FINDINGS"))
    # the impression repeats the most important statement, as radiologists do
    lead = next((f for f in findings if f.label in ("positive", "uncertain")), findings[0])
    impression = lead.sentence
    findings.append(FindingLabel(lead.finding, lead.label, impression, "IMPRESSION"))
    exam = _EXAMS[study_type].format(contrast="WITH CONTRAST" if contrast else "WITHOUT CONTRAST")
    date = f"{study_date[4:6]}/{study_date[6:8]}/{study_date[:4]}"
    lines = []
    if include_header_phi:
        lines.append(f"PATIENT: {patient_name.replace('^', ' ').title()}   MRN: {patient_id}")
    lines += [
        f"EXAMINATION: {exam}",
        f"DATE: {date}",
        f"CLINICAL HISTORY: {rng.choice(_HISTORY)}",
        "COMPARISON: " + (str(rng.choice(["None.", "Prior study from 2 years earlier."]))),
        "",
        "FINDINGS:",
        " ".join(sentences),
        "",
        "IMPRESSION:",
        f"1. {impression}",
        "",
        f"Electronically signed by {physician.split('^')[1].title()} "
        f"{physician.split('^')[0].title()}, MD on {date}.",
    ]
    return Report("\n".join(lines) + "\n", tuple(findings))
