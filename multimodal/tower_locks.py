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
"""

from __future__ import annotations

import threading
import weakref
from typing import NamedTuple


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
