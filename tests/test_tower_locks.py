"""The towers at serving time: one pass at a time per tower, and query photos that arrive
while the image tower is busy share its next pass, each getting its own photo's vector."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from multimodal.tower_locks import PhotoQueue, photo_queue, tower_locks


def _photos(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    shape = (40, 56, 3)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for _ in range(count)]


def _asked_while_busy(queue: PhotoQueue, photos: list) -> dict[int, np.ndarray]:
    """Each photo asked for from its own thread while the tower is busy (its lock held until
    all of them wait), then the tower let go: each photo's vector, by index."""
    results: dict[int, np.ndarray] = {}

    def ask(index: int) -> None:
        results[index] = queue.encode(photos[index])

    with queue.lock:
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(photos))]
        for thread in threads:
            thread.start()
        while len(queue._waiting) < len(photos):
            threading.Event().wait(0.005)
    for thread in threads:
        thread.join(30)
    return results


def test_photos_waiting_for_the_tower_share_one_pass(tiny_encoder):
    queue, photos = PhotoQueue(tiny_encoder), _photos(6)
    alone = tiny_encoder.encode_images(photos)  # each photo's own vector, one batch
    results = _asked_while_busy(queue, photos)
    assert queue.passes == 1  # one pass for six photos
    for index, vector in results.items():
        assert np.allclose(vector, alone[index], atol=1e-5), index
    assert queue.encode(photos[0]) is not None and queue.passes == 2  # a free tower: at once


def test_a_pass_takes_at_most_its_share_and_the_rest_follow(tiny_encoder):
    queue, photos = PhotoQueue(tiny_encoder, max_shared=2), _photos(5)
    results = _asked_while_busy(queue, photos)
    assert len(results) == 5 and queue.passes == 3  # 2 + 2 + 1


def test_one_queue_per_encoder_and_one_lock_per_model(tiny_encoder):
    other = tiny_encoder.with_tta(not tiny_encoder.tta)
    assert photo_queue(tiny_encoder) is photo_queue(tiny_encoder)
    assert photo_queue(tiny_encoder) is not photo_queue(other)  # its views make its vectors
    assert photo_queue(other).lock is tower_locks(tiny_encoder).image
