"""The image tower compiled for query photos (``torch.compile``), swapped in once it is ready.

A server runs the image tower on one shape again and again: one query photo's views. Compiled
by Inductor, that pass takes 29 ms instead of 56 on a 2-core CPU (the recipe model's
EfficientNet-Lite0, 4 views; ``benchmarks/api_load.py`` measures what it does to a burst of
searches). Compiling costs about 30 s of CPU at a first start (Inductor keeps its work in a
cache on disk for the next one), so it runs in a background thread: searches run on the eager
tower until the compiled pass has run once, then on the compiled one. Only that shape takes
the compiled pass; any other batch (several photos sharing a pass on a GPU, indexing in the
same process) runs eagerly, so no request ever waits for a compile. Where compiling fails (no
C++ compiler, a model Inductor cannot trace), the eager tower stays and one line says why.

Compiled and eager passes agree to about 1e-6 in each coordinate of a unit vector. The
compiled code is cached in ``$TORCHINDUCTOR_CACHE_DIR``, by default a private folder of the
product's data home (``torch-compile``), not Inductor's own default in the shared ``/tmp``,
where another user of the machine could leave code for this process to load.

    >>> thread = compile_image_tower(encoder)   # returns at once; the page serves meanwhile
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import torch
from PIL import Image

from multimodal.paths import data_home

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"  # where Inductor keeps compiled code between starts


class _OneShape:
    """The tower's forward: the compiled pass for ``shape``, the eager one for anything else."""

    def __init__(self, eager: Callable, compiled: Callable, shape: torch.Size):
        self.eager, self.compiled, self.shape = eager, compiled, shape

    def __call__(self, pixels, *args, **kwargs):
        if pixels.shape == self.shape and not args and not kwargs:
            return self.compiled(pixels)
        return self.eager(pixels, *args, **kwargs)


def query_shape(encoder) -> torch.Size:
    """The pixels one query photo puts through the image tower: its views (with TTA) or
    itself, as the encoder's own preprocessing makes them."""
    pixels = encoder.preprocess(Image.new("RGB", (64, 64)))
    return pixels.shape if pixels.dim() == 4 else torch.Size((1, *pixels.shape))


def compile_image_tower(
    encoder, log: Callable[[str], None] = print, backend: str = "inductor"
) -> threading.Thread:
    """Compile ``encoder``'s image tower for one query photo with ``torch.compile``'s
    ``backend`` in a background thread (started and returned) and swap it in once it has run;
    the weights and the state dict stay the module's own."""
    thread = threading.Thread(
        target=_compile, args=(encoder, log, backend), name="compile-image-tower", daemon=True
    )
    thread.start()
    return thread


def _compile(encoder, log: Callable[[str], None], backend: str) -> None:
    visual = encoder.model.visual
    if isinstance(visual.forward, _OneShape):  # compiled already (another encoder variant)
        return
    shape = query_shape(encoder)
    eager = visual.forward
    try:
        _private_cache()
        compiled = torch.compile(eager, backend=backend, dynamic=False)
        example = torch.zeros(shape, device=encoder.device)
        if encoder.channels_last:
            example = example.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            compiled(example)  # the compile itself, off the request path
    except Exception as err:  # any failure of the compiler leaves the eager tower serving
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        log(f"the image tower runs uncompiled ({type(err).__name__}: {reason[:200]})")
        return
    visual.forward = _OneShape(eager, compiled, shape)
    log(f"the image tower is compiled for query photos (input {tuple(shape)})")


def _private_cache() -> None:
    """Point Inductor's cache at ``<data home>/torch-compile`` (owner only) unless the user
    named one."""
    if not os.environ.get(CACHE_ENV):
        folder = data_home() / "torch-compile"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.environ[CACHE_ENV] = str(folder)
