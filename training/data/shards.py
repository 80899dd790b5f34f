"""The only reader and writer of the HDF5 shard layout (DESIGN.md contract 1b)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Shard"]


@dataclass
class Shard:
    """One shard in memory: datasets by HDF5 path and the file attributes.

    ``arrays`` keys are the dataset paths of contract 1b: ``constituents``, ``images``, ``jet``,
    ``features/<name>``, ``particles``, ``label``. ``attrs`` holds ``process``, ``seed``,
    ``settings`` (a JSON string), ``n_tried``, ``cross_section_pb`` and tool versions.
    """

    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.arrays["label"])
