"""One forward pass at a time per tower of a model, whoever asks: a server's page and API, the
command line, a benchmark.

    >>> image, text = tower_locks(encoder)
    >>> with text:
    ...     vectors = encoder.encode_texts(["apple pie"])

The locks belong to the model's weights, so an encoder and its variant with or without
test-time augmentation (:meth:`multimodal.encoder.DualEncoder.with_tta`, same weights) share
them. Each tower has its own: a text query never waits behind a photo's views. Two threads
running one tower together would each get half the cores and finish no sooner; under the lock
the first is done in half the time.

Query photos that arrive while the image tower is busy wait in one queue and are served in
the order they came (:class:`PhotoQueue`); on a GPU they share its next pass: four concurrent
photo searches cost one batched pass, not four in a row.
"""

from __future__ import annotations

import threading
import weakref
from typing import NamedTuple

import numpy as np
import torch


class TowerLocks(NamedTuple):
    image: threading.Lock
    text: threading.Lock


_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_made = threading.Lock()


def tower_locks(encoder) -> TowerLocks:
    """The image tower's and the text tower's locks of ``encoder``'s model."""
    with _made:
        locks = _locks.get(encoder.model)
        if locks is None:
            locks = _locks[encoder.model] = TowerLocks(threading.Lock(), threading.Lock())
        return locks


MAX_SHARED = 16  # photos one forward pass of the image tower takes for concurrent queries
# On a CPU a batch costs more per photo than a photo alone: the recipe model's image tower (4
# views a photo, 2 cores) takes 53 ms for one photo, 62 ms a photo in batches of 2 to 4, 78 at
# 8, 93 at 16, so there photos queue but each runs its own pass.
MAX_SHARED_CPU = 1


class _Waiting:
    """A photo's pixels waiting for the image tower, and its vector once a pass has run it."""

    def __init__(self, pixels):
        self.pixels = pixels
        self.vector = None


class PhotoQueue:
    """Query photos that arrive while the image tower is busy share its next forward pass.

    Whoever gets the tower's lock runs the photos that have waited longest (up to
    ``max_shared``; default :data:`MAX_SHARED` on a GPU, :data:`MAX_SHARED_CPU` on a CPU) in
    one batch; a caller whose photo was in someone else's batch finds its vector ready and
    returns. Nothing waits on a timer: a photo that finds the tower free runs at once, alone,
    and under load the batches grow by themselves.

    >>> vector = photo_queue(encoder).encode(image)
    """

    def __init__(self, encoder, max_shared: int | None = None):
        if max_shared is None:
            max_shared = MAX_SHARED if encoder.device.type == "cuda" else MAX_SHARED_CPU
        self.encoder, self.max_shared = encoder, max_shared
        self.lock = tower_locks(encoder).image
        self._waiting: list[_Waiting] = []
        self._guard = threading.Lock()
        self.passes = 0  # forward passes run, for the curious (tests, benchmarks)

    def encode(self, image, raw: bool = False):
        """``image``'s unit vector (a float32 array; ``raw``: before normalisation, see
        :meth:`multimodal.encoder.DualEncoder.encode_pixels`), computed in a shared pass. The
        photo is preprocessed (resized, cropped into its views) by its caller before it
        waits: a pass holds the tower's lock for the tower alone."""
        mine = _Waiting(self.encoder.preprocess(image))
        with self._guard:
            self._waiting.append(mine)
        while mine.vector is None:
            with self.lock:
                if mine.vector is not None:  # a pass that ran while we waited took ours
                    break
                with self._guard:
                    batch = self._waiting[: self.max_shared]
                    del self._waiting[: len(batch)]
                vectors = self.encoder.encode_pixels(
                    torch.stack([w.pixels for w in batch]), raw=True
                )
                self.passes += 1
                for waiting, vector in zip(batch, vectors, strict=True):
                    waiting.vector = vector
        return mine.vector if raw else mine.vector / np.linalg.norm(mine.vector)


_queues: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_queues_made = threading.Lock()  # not _made: a new queue takes that one for its lock


def photo_queue(encoder) -> PhotoQueue:
    """The :class:`PhotoQueue` of ``encoder`` (one per encoder: its TTA setting makes its
    vectors; the lock is its model's)."""
    with _queues_made:
        queue = _queues.get(encoder)
        if queue is None:
            queue = _queues[encoder] = PhotoQueue(encoder)
        return queue
