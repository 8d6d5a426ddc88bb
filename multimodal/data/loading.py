"""Decode and preprocess images in DataLoader workers; a bad file is reported, never fatal,
and the workers die with the process that started them (:func:`die_with_parent`)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from multimodal.data.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from multimodal.data.records import Record, printable


@dataclass
class Reject:
    index: int  # position in the input list
    path: str  # the file
    reason: str  # why it was skipped

    def as_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


def check_records(records: Sequence[Record]) -> tuple[list[Record], list[Reject]]:
    """The records that can be stored; each other one (a file name that is not UTF-8, a caption
    file that cannot be read, NaN in its metadata, ...) is a reject with its path and reason."""
    usable, rejects = [], []
    for index, record in enumerate(records):
        reason = record.problem()
        if reason is None:
            usable.append(record)
        else:
            where = record.image if record.image is not None else f"text {record.title[:60]!r}"
            rejects.append(Reject(index, printable(where), reason))
    return usable, rejects


@dataclass
class ImageBatch:
    indices: list[int]  # positions in the input list of the rows of ``pixels``
    pixels: torch.Tensor | None  # (B, 3, H, W), (B, V, 3, H, W) with TTA; None: all failed
    rejects: list[Reject] = field(default_factory=list)


class ImageFiles(Dataset):
    """``paths[i]`` -> ``(i, tensor, None)`` or ``(i, None, reason)``."""

    def __init__(self, paths: Sequence[str | Path], transform: Callable, max_pixels: int):
        self.paths = [str(p) for p in paths]
        self.transform = transform
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return index, self.transform(load_image(self.paths[index], self.max_pixels)), None
        except ImageLoadError as err:
            return index, None, err.reason
        except Exception as err:  # a transform failing on a strange image must not stop a run
            return index, None, f"could not preprocess: {type(err).__name__}: {err}"


def iter_image_batches(
    paths: Sequence[str | Path],
    transform: Callable,
    batch_size: int = 64,
    workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[ImageBatch]:
    """Batches of preprocessed images in input order, decoded by ``workers`` processes."""
    dataset = ImageFiles(paths, transform, max_pixels)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers if len(dataset) > batch_size else 0,
        collate_fn=partial(_collate, paths=dataset.paths),  # picklable for any start method
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=partial(decoding_worker, parent=os.getpid()),
    )
    yield from loader


WORKER_NICENESS = 19  # the lowest: decoding yields the cores to the model's threads (os.nice)


def decoding_worker(worker_id: int, parent: int) -> None:
    """A decoding worker of process ``parent``: it dies with it (:func:`die_with_parent`),
    single-threaded and below the model's priority (:func:`single_threaded_worker`)."""
    die_with_parent(parent)
    single_threaded_worker(worker_id)


def single_threaded_worker(_worker_id: int) -> None:
    """Decoding workers need no intra-op threads, and run below the model's priority: where
    cores are scarce, a worker that wakes would stall every thread of the model's parallel
    operations; at a lower priority it decodes in the gaps (with spare cores, nothing changes)."""
    torch.set_num_threads(1)
    with contextlib.suppress(OSError):  # a system that refuses: the same priority, then
        os.nice(WORKER_NICENESS)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>: the signal a process gets when its parent dies


def die_with_parent(parent: int) -> None:
    """On Linux, have the kernel SIGKILL this process as soon as its parent dies (``prctl``).

    A forked worker holds copies of its parent's file descriptors, the store's lock among
    them: killed with ``kill -9``, an indexer's workers would otherwise keep the store locked
    until they notice on their own (torch's check runs every 5 s). Should the parent be gone
    already (it died between the fork and this call), the worker ends now. Elsewhere: nothing
    (the workers notice as before). Strictly, the kernel watches the thread that started the
    workers: the one that iterates the batches, which lives until they are done."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # no libc to call: as elsewhere
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if not _alive(parent):
        os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or its number is another user's now
        return False
    return True


def _collate(items, paths: list[str]) -> ImageBatch:
    good = [(index, tensor) for index, tensor, _ in items if tensor is not None]
    rejects = [Reject(index, paths[index], reason) for index, _, reason in items if reason]
    pixels = torch.stack([tensor for _, tensor in good]) if good else None
    return ImageBatch([index for index, _ in good], pixels, rejects)
