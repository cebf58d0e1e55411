"""The geometry of a series before it is written: one draft per slice.

A series is planned as a regular stack (positions along the slice normal at a constant spacing, one
orientation, one pixel spacing and matrix, consecutive instance numbers). Defects then edit the drafts
(drop one, tilt the stack, insert a localizer...), and the writer renders and writes what remains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

AXIAL: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL: tuple[float, ...] = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def slice_normal(orientation: tuple[float, ...]) -> np.ndarray:
    """Unit normal of a slice: row direction x column direction."""
    n = np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:6]))
    return n / np.linalg.norm(n)


def rotated_about_x(orientation: tuple[float, ...], degrees: float) -> tuple[float, ...]:
    """``orientation`` rotated by ``degrees`` about the patient x (left-right) axis."""
    t = np.deg2rad(degrees)
    rot = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])
    row = rot @ np.asarray(orientation[:3])
    col = rot @ np.asarray(orientation[3:6])
    return tuple(round(float(v), 6) for v in (*row, *col))


@dataclass
class SliceDraft:
    """One slice (one file) of a series as planned; defects edit these fields."""

    index: int
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    instance_number: int
    sop_instance_uid: str
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    b_value: float | None = None
    direction: tuple[float, float, float] | None = None
    localizer: bool = False
    #: write | zero_byte | truncate
    file_action: str = "write"
    #: pixel defect to apply after rendering: (kind, params)
    pixel_defect: tuple[str, dict[str, Any]] | None = None
    #: per-slice header values that differ from the series (keyword -> value)
    header: dict[str, Any] = field(default_factory=dict)


@dataclass
class SeriesDraft:
    """The drafts of a series plus what defects changed at the series level."""

    slices: list[SliceDraft]
    spacing_mm: float
    #: series-wide header overrides (keyword -> value) applied on top of the series dataset
    header: dict[str, Any] = field(default_factory=dict)
    #: indices (into ``slices``, after editing) of instances a defect touched: instance-level truth
    affected: list[int] = field(default_factory=list)


def regular_stack(
    *,
    n: int,
    first_position: tuple[float, float, float],
    orientation: tuple[float, ...],
    spacing_mm: float,
    pixel_spacing: tuple[float, float],
    rows: int,
    columns: int,
    uids: list[str],
    image_type: tuple[str, ...],
    reverse: bool = True,
) -> list[SliceDraft]:
    """A regular stack of ``n`` slices along the normal of ``orientation``.

    ``reverse`` walks against the normal (CT head-to-feet order: decreasing z for axial).
    """
    normal = slice_normal(orientation) * (-1.0 if reverse else 1.0)
    p0 = np.asarray(first_position, dtype=np.float64)
    drafts = []
    for i in range(n):
        p = p0 + normal * spacing_mm * i
        drafts.append(
            SliceDraft(
                index=i,
                position=(round(float(p[0]), 4), round(float(p[1]), 4), round(float(p[2]), 4)),
                orientation=orientation,
                pixel_spacing=pixel_spacing,
                rows=rows,
                columns=columns,
                instance_number=i + 1,
                sop_instance_uid=uids[i],
                image_type=image_type,
            )
        )
    return drafts
