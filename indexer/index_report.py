"""What an index run did: counts, moves, the time of each stage, the files skipped and why."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from multimodal.data.loading import Reject


@dataclass
class IndexReport:
    collection: str
    indexed: int = 0
    unchanged: int = 0
    rejected: int = 0
    pruned: int = 0
    relinked: dict[str, str] = field(default_factory=dict)  # moved data roots: old -> new path
    relinked_points: int = 0  # points of moved roots that now name the new path (not embedded)
    worded: int = 0  # points of a collection made before hybrid search given their BM25 words
    resumed_bulk: bool = False  # an earlier run's bulk load, left in progress, was finished
    total: int = 0  # points in the collection afterwards
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    rejects: list[Reject] = field(default_factory=list)

    @property
    def items_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        stages = ", ".join(f"{name} {sec:.1f}s" for name, sec in self.stages.items())
        line = (
            f"{self.collection}: indexed {self.indexed}, unchanged {self.unchanged}, "
            f"rejected {self.rejected}, pruned {self.pruned}; {self.total} points; "
            f"{self.seconds:.1f}s, {self.items_per_second:.1f} items/s ({stages})"
        )
        if self.relinked:
            moves = ", ".join(f"{old} to {new}" for old, new in self.relinked.items())
            line += f"; re-linked {self.relinked_points} points moved from {moves}"
        if self.worded:
            line += f"; added BM25 words to {self.worded} points (not embedded again)"
        if self.resumed_bulk:
            line += "; finished the bulk load an earlier run left in progress"
        return line
