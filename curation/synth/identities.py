"""Fake people: patients, physicians and operators with identifiers that look real.

Names are drawn from common given names and surnames, so privacy checks (name detectors, identifier
patterns) have something realistic to find; none belongs to a real record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GIVEN_F = (
    "MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "BARBARA", "SUSAN", "JESSICA", "SARAH",
    "KAREN", "NANCY", "LISA", "MARGARET", "SANDRA", "ASHLEY", "EMILY", "DONNA", "MICHELLE", "CAROL",
    "AMANDA", "MELISSA", "DEBORAH", "STEPHANIE", "REBECCA", "LAURA", "HELEN", "SHARON", "ANNA",
)  # fmt: skip
GIVEN_M = (
    "JAMES", "ROBERT", "JOHN", "MICHAEL", "DAVID", "WILLIAM", "RICHARD", "JOSEPH", "THOMAS",
    "CHARLES", "CHRISTOPHER", "DANIEL", "MATTHEW", "ANTHONY", "MARK", "DONALD", "STEVEN", "PAUL",
    "ANDREW", "JOSHUA", "KENNETH", "KEVIN", "BRIAN", "GEORGE", "EDWARD", "RONALD", "TIMOTHY",
)  # fmt: skip
SURNAMES = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ",
    "MARTINEZ", "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR", "MOORE",
    "JACKSON", "MARTIN", "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ", "CLARK", "LEWIS",
    "ROBINSON", "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT", "NGUYEN", "HILL", "FLORES",
    "GREEN", "ADAMS", "NELSON", "BAKER", "HALL", "RIVERA", "CAMPBELL", "MITCHELL", "CARTER", "ROBERTS",
    "O'BRIEN", "MUELLER", "KOWALSKI", "NOVAK", "VAN DER BERG", "DUPONT",
)  # fmt: skip


@dataclass(frozen=True)
class Person:
    """A fake patient."""

    PatientName: str
    PatientID: str
    PatientBirthDate: str
    PatientSex: str
    PatientWeight: float
    PatientSize: float


def person_name(rng: np.random.Generator, sex: str | None = None) -> str:
    """A DICOM PN value ``FAMILY^GIVEN[^MIDDLE]``."""
    sex = sex or str(rng.choice(["F", "M"]))
    given = GIVEN_F if sex == "F" else GIVEN_M
    name = f"{rng.choice(SURNAMES)}^{rng.choice(given)}"
    if rng.random() < 0.3:
        name += f"^{rng.choice(GIVEN_F + GIVEN_M)[0]}"
    return name


def physician_name(rng: np.random.Generator) -> str:
    """A referring/reading physician, sometimes with the ``DR`` prefix component."""
    name = person_name(rng)
    return name + "^^DR" if rng.random() < 0.4 and name.count("^") == 1 else name


def patient(rng: np.random.Generator, mrn_format: str, study_year: int) -> Person:
    """A fake patient whose PatientID follows the site's MRN format."""
    sex = str(rng.choice(["F", "M"]))
    age = int(rng.integers(18, 90))
    birth = f"{study_year - age:04d}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    return Person(
        PatientName=person_name(rng, sex),
        PatientID=mrn_format.format(n=int(rng.integers(10_000, 9_999_999))),
        PatientBirthDate=birth,
        PatientSex=sex,
        PatientWeight=round(float(rng.normal(72 if sex == "F" else 85, 12)), 1),
        PatientSize=round(float(rng.normal(1.64 if sex == "F" else 1.77, 0.07)), 2),
    )
