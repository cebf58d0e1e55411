"""Burned-in text: a 5x7 bitmap font drawn into pixel arrays, as modality screen captures do."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

# Each glyph: 7 rows of 5 bits, most significant bit leftmost.
_GLYPHS: dict[str, tuple[int, ...]] = {
    " ": (0, 0, 0, 0, 0, 0, 0),
    "0": (14, 17, 19, 21, 25, 17, 14),
    "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31),
    "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2),
    "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14),
    "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14),
    "9": (14, 17, 17, 15, 1, 2, 12),
    "A": (14, 17, 17, 31, 17, 17, 17),
    "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14),
    "D": (28, 18, 17, 17, 17, 18, 28),
    "E": (31, 16, 16, 30, 16, 16, 31),
    "F": (31, 16, 16, 30, 16, 16, 16),
    "G": (14, 17, 16, 23, 17, 17, 15),
    "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14),
    "J": (7, 2, 2, 2, 2, 18, 12),
    "K": (17, 18, 20, 24, 20, 18, 17),
    "L": (16, 16, 16, 16, 16, 16, 31),
    "M": (17, 27, 21, 21, 17, 17, 17),
    "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14),
    "P": (30, 17, 17, 30, 16, 16, 16),
    "Q": (14, 17, 17, 17, 21, 18, 13),
    "R": (30, 17, 17, 30, 20, 18, 17),
    "S": (15, 16, 16, 14, 1, 1, 30),
    "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14),
    "V": (17, 17, 17, 17, 17, 10, 4),
    "W": (17, 17, 17, 21, 21, 21, 10),
    "X": (17, 17, 10, 4, 10, 17, 17),
    "Y": (17, 17, 17, 10, 4, 4, 4),
    "Z": (31, 1, 2, 4, 8, 16, 31),
    "^": (4, 10, 17, 0, 0, 0, 0),
    "-": (0, 0, 0, 31, 0, 0, 0),
    ":": (0, 12, 12, 0, 12, 12, 0),
    "/": (1, 1, 2, 4, 8, 16, 16),
    ".": (0, 0, 0, 0, 0, 12, 12),
    ",": (0, 0, 0, 0, 12, 4, 8),
}


def text_mask(text: str, scale: int = 1) -> NDArray[np.bool_]:
    """A boolean mask of ``text`` (upper-cased; unknown characters become spaces)."""
    cols = []
    for ch in text.upper():
        rows = _GLYPHS.get(ch, _GLYPHS[" "])
        glyph = np.array([[(r >> (4 - b)) & 1 for b in range(5)] for r in rows], dtype=bool)
        cols += [glyph, np.zeros((7, 1), dtype=bool)]
    mask = np.concatenate(cols, axis=1) if cols else np.zeros((7, 0), dtype=bool)
    if scale > 1:
        mask = np.kron(mask, np.ones((scale, scale), dtype=bool))
    return mask


def draw_text(
    image: NDArray[np.float64], lines: list[str], row: int, col: int, value: float, scale: int
) -> tuple[int, int]:
    """Draw ``lines`` into ``image`` (in place) from (row, col); returns the (height, width) used."""
    height = width = 0
    for line in lines:
        mask = text_mask(line, scale)
        h = min(mask.shape[0], image.shape[0] - row - height)
        w = min(mask.shape[1], image.shape[1] - col)
        if h <= 0 or w <= 0:
            break
        region = image[row + height : row + height + h, col : col + w]
        region[mask[:h, :w]] = value
        height += h + 2 * scale
        width = max(width, w)
    return height, width
