"""The towers at serving time: one pass at a time per tower; query photos that arrive while
the image tower is busy wait in arrival order and (on a GPU) share its next pass, each getting
its own photo's vector; the image tower compiled for query photos, swapped in when ready."""

from __future__ import annotations

import threading

import numpy as np
import torch
from PIL import Image

from multimodal.compiled import compile_image_tower, query_shape
from multimodal.encoder import load_encoder
from multimodal.tower_locks import MAX_SHARED, PhotoQueue, photo_queue, tower_locks


def _photos(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    shape = (40, 56, 3)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for _ in range(count)]


def _asked_while_busy(queue: PhotoQueue, photos: list, arrived=None) -> dict[int, np.ndarray]:
    """Each photo asked for from its own thread while the tower is busy (its lock held until
    all of them wait), then the tower let go: each photo's vector, by index (``arrived``, a
    list: the photos' pixels in the order they waited, appended)."""
    results: dict[int, np.ndarray] = {}

    def ask(index: int) -> None:
        results[index] = queue.encode(photos[index])

    with queue.lock:
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(photos))]
        for thread in threads:
            thread.start()
        while len(queue._waiting) < len(photos):
            threading.Event().wait(0.005)
        if arrived is not None:
            arrived.extend(waiting.pixels for waiting in queue._waiting)
    for thread in threads:
        thread.join(30)
    return results


def test_photos_waiting_for_the_tower_share_one_pass(tiny_encoder):
    queue, photos = PhotoQueue(tiny_encoder, max_shared=MAX_SHARED), _photos(6)
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


class _Recording:
    """The real encoder, noting the pixels each pass of its image tower ran."""

    def __init__(self, encoder):
        self.encoder, self.preprocess, self.passes = encoder, encoder.preprocess, []

    def encode_pixels(self, pixels, raw=False):
        self.passes.append(pixels)
        return self.encoder.encode_pixels(pixels, raw)


def test_on_a_cpu_photos_queue_in_arrival_order_one_pass_each(tiny_encoder):
    queue, photos = PhotoQueue(tiny_encoder), _photos(5)
    assert queue.max_shared == 1  # a batch costs a CPU more per photo than photos alone
    recording = queue.encoder = _Recording(tiny_encoder)
    arrived = []
    results = _asked_while_busy(queue, photos, arrived)
    assert len(results) == 5 and [len(p) for p in recording.passes] == [1] * 5
    ran = [pixels[0] for pixels in recording.passes]
    assert all(torch.equal(a, b) for a, b in zip(ran, arrived, strict=True))  # first come first
    alone = tiny_encoder.encode_images(photos)
    for index, vector in results.items():
        assert np.allclose(vector, alone[index], atol=1e-5), index


def test_the_compiled_image_tower_gives_the_eager_vectors_for_query_photos(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODAL_HOME", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    encoder = load_encoder("tiny-random", device="cpu", tta=True)  # its own weights to compile
    photos = _photos(3)
    eager_one, eager_three = encoder.encode_images(photos[:1]), encoder.encode_images(photos)
    lines = []
    compile_image_tower(encoder, lines.append).join(300)
    size = encoder.image_size
    assert query_shape(encoder) == (4, 3, size, size)  # one photo's 4 views
    assert lines == [f"the image tower is compiled for query photos (input (4, 3, {size}, {size}))"]
    forward = encoder.model.visual.forward
    assert np.allclose(encoder.encode_images(photos[:1]), eager_one, atol=1e-5)
    assert np.allclose(encoder.encode_images(photos), eager_three, atol=1e-5)  # other: eager
    compile_image_tower(encoder.with_tta(False), lines.append).join(60)
    assert encoder.model.visual.forward is forward and len(lines) == 1  # one compile a model
    cache = tmp_path / "torch-compile"  # the compiled code: private, not in the shared /tmp
    assert any(cache.iterdir()) and cache.stat().st_mode & 0o077 == 0


def test_a_failed_compile_leaves_the_eager_tower_and_says_so():
    encoder = load_encoder("tiny-random", device="cpu")
    eager, lines = encoder.model.visual.forward, []
    compile_image_tower(encoder, lines.append, backend="no-such-backend").join(60)
    assert len(lines) == 1 and lines[0].startswith("the image tower runs uncompiled (")
    assert "no-such-backend" in lines[0]
    assert encoder.model.visual.forward == eager  # the bound method the module always had
    assert encoder.encode_images(_photos(1)).shape == (1, encoder.embed_dim)
