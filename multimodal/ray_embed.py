"""Embedding on a Ray cluster: Ray Data decodes the images in CPU tasks and embeds them in a
pool of actors, one model each (clip-retrieval's reader -> mapper, on Ray Data's
``map_batches``).

    with ray_session(address=None) as ray:  # None: start a local cluster
        plan = plan_actors(RayOptions(actors=2), ray.cluster_resources())
        rows = [{"image": "/photos/pie.jpg", "text": "apple pie"}, ...]
        for batch in run_batches(embed_dataset(ray, rows, encoder, plan)):
            batch["image_vector"], batch["text_vector"], batch["reject"]

A row in: ``image`` (a path; "" for none) and ``text`` ("" for none); any other column passes
through untouched. A row out: the same columns plus ``image_vector`` and ``text_vector``
(float32, L2-normalised; zeros where there was nothing to embed) and ``reject`` (why the image
could not be used, "" when it could). Decoding is :class:`multimodal.data.loading.ImageFiles`,
the local engine's own (the same limits and reasons); each modality is embedded on its own,
as :mod:`multimodal.embedding` does. Rows come back in any order: keep a key in a column.

Ray is an optional extra (``pip install "recipe-search[ray]"``), imported only here, lazily.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from multimodal.data.images import DEFAULT_MAX_PIXELS
from multimodal.data.loading import ImageFiles
from multimodal.encoder import DualEncoder, load_encoder, model_stamp

RAY_EXTRA = 'pip install "recipe-search[ray]"'
ENGINES = ("local", "ray")
# Of a CPU-only cluster, the share left to the decoding tasks (the towers cost far more per
# photo than decoding it on a CPU), and the logical CPUs each decoding task asks for.
DECODE_SHARE = 0.25
DECODE_TASK_CPUS = 0.25


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a ValueError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library is part of the pinned extra)
    except ImportError:
        raise ValueError(
            f"--engine ray needs Ray, an optional extra: {RAY_EXTRA} (from a clone: "
            'pip install -e ".[ray]"), or use --engine local'
        ) from None
    return ray


@dataclass
class RayOptions:
    """How to run the Ray engine (``--ray-address``, ``--actors``, ``--device``, ...)."""

    address: str | None = None  # a cluster to join (HOST:PORT, auto, ray://HOST:PORT); None: local
    actors: int | None = None  # embedding actors; None: one per GPU, else one per 4 CPUs
    device: str | None = None  # cuda: GPU actors; cpu: CPU actors; None: GPUs where there are some
    precision: str = "fp32"  # of the actors' models (bf16, fp16: GPU actors only)
    batch_size: int | None = None  # images per forward pass; None: 128 on a GPU, 16 on a CPU


@dataclass
class ActorPlan:
    """How many embedding actors, with which resources (Ray's logical units)."""

    actors: int
    gpus: float  # per actor
    cpus: float  # per actor
    threads: int  # torch threads per actor
    device: str  # what each actor's model runs on
    decode_cpus: float  # per decoding task
    batch_size: int  # rows per decoding task and per forward pass
    precision: str = "fp32"  # of each actor's model


def plan_actors(options: RayOptions, resources: dict[str, float]) -> ActorPlan:
    """The actor pool for a cluster of ``resources`` (``ray.cluster_resources()``): one GPU per
    actor where the cluster has GPUs (one actor per GPU unless ``options.actors``), else CPU
    actors sharing three quarters of the CPUs, the rest left to decoding.

    >>> plan_actors(RayOptions(), {"CPU": 16.0, "GPU": 2.0}).actors
    2
    >>> plan_actors(RayOptions(actors=2), {"CPU": 2.0}).threads
    1
    """
    cpus, gpus = float(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    if cpus < 1:
        raise RuntimeError("the Ray cluster has no CPU for the decoding tasks")
    device = options.device or ("cuda" if gpus else "cpu")
    batch = options.batch_size
    if batch is None:
        batch = 128 if device.startswith("cuda") else 16
    if batch < 1:
        raise ValueError("--batch-size must be at least 1")
    if device.startswith("cuda"):
        if not gpus:
            raise ValueError("--device cuda, but the Ray cluster has no GPU; leave --device out")
        actors = options.actors or gpus
        if actors > gpus:
            raise ValueError(f"--actors {actors}: the Ray cluster has {gpus} GPUs, one per actor")
        actor_cpus = min(1.0, cpus / (actors + 1))  # the rest decodes, one CPU per task
        decode = min(1.0, cpus - actor_cpus * actors)
        return ActorPlan(actors, 1, actor_cpus, 1, "cuda", decode, batch, options.precision)
    if options.precision != "fp32":
        raise ValueError(f"{options.precision} needs GPU actors; on CPU actors use fp32")
    actors = options.actors or max(1, int(cpus) // 4)
    share = (cpus - min(1.0, cpus * DECODE_SHARE)) / actors
    return ActorPlan(actors, 0, share, max(1, round(share)), "cpu", DECODE_TASK_CPUS, batch)


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Ray, connected: to the cluster at ``address``, else to a new local one, shut down at
    the end. A process that has already called ``ray.init`` (a notebook, the tests) keeps its
    own connection. An unreachable address is one RuntimeError, not Ray's minute of retries."""
    ray = import_ray()
    if address:
        probe_address(address)
    if ray.is_initialized():
        _quiet_ray_data(ray)
        yield ray
        return
    # A new local cluster gets Ray's default token authentication, without its warning.
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    try:
        notice.setLevel(logging.ERROR)
        ray.init(
            address=address or None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except Exception as err:  # ConnectionError, a version mismatch, a missing token, ...
        where = f"join the Ray cluster at {address}" if address else "start a local Ray cluster"
        raise RuntimeError(f"cannot {where}: {_first_line(err)}") from None
    finally:
        notice.setLevel(logging.NOTSET)
    _quiet_ray_data(ray)
    try:
        yield ray
    finally:
        ray.shutdown()


def probe_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing listens at ``HOST:PORT`` (Ray itself retries for minutes)."""
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray checks itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise RuntimeError(
            f"cannot reach a Ray cluster at {address} ({err.strerror or err}); check the address "
            "(`ray start --head` prints it) or drop --ray-address to start a local cluster"
        ) from None


def _quiet_ray_data(ray: Any) -> None:
    """No progress bars or execution plans from Ray Data (the caller shows one bar); they
    stay in the session's log folder, ``/tmp/ray/session_latest/logs/ray-data``."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for handler in logging.getLogger("ray.data").handlers:
        # Ray's own console handler only: failures reach the caller as errors. The log file
        # keeps everything, and a handler another library attached (a test's log capture)
        # is not Ray's to silence.
        ray_made = type(handler).__module__.startswith("ray.")
        if ray_made and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.CRITICAL + 1)


def model_spec(encoder: DualEncoder) -> str:
    """What the actors load: the spec the driver's model was made from (a folder: absolute,
    so it must be at the same path on every node)."""
    return model_stamp(encoder)["name"]


def embed_dataset(
    ray: Any,
    rows: list[dict[str, Any]],
    encoder: DualEncoder,
    plan: ActorPlan,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Any:
    """A Ray Dataset of ``rows`` decoded by tasks and embedded by ``plan.actors`` actors,
    each loading ``encoder``'s model once (see the module's docstring for the columns)."""
    # Every actor gets blocks, even of a few rows: small batches rather than idle actors.
    actors = max(1, min(plan.actors, len(rows)))
    batch = max(1, min(plan.batch_size, -(-len(rows) // actors)))
    blocks = max(1, min(-(-len(rows) // batch), 1000))
    shape = tuple(encoder.preprocess(Image.new("RGB", (8, 8))).shape)
    decoded = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        decode_batch,
        fn_kwargs={"transform": encoder.preprocess, "max_pixels": max_pixels, "shape": shape},
        batch_size=batch,
        batch_format="numpy",
        num_cpus=plan.decode_cpus,
    )
    model = {"spec": model_spec(encoder), "device": plan.device, "tta": encoder.tta}
    return decoded.map_batches(
        EmbeddingActor,
        fn_constructor_kwargs={**model, "precision": plan.precision, "threads": plan.threads},
        compute=ray.data.ActorPoolStrategy(size=actors),
        batch_size=batch,
        batch_format="numpy",
        num_cpus=plan.cpus,
        num_gpus=plan.gpus,
    )


def decode_batch(
    batch: dict[str, np.ndarray], transform, max_pixels: int, shape: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """A decoding task: each row's image through the local engine's loader and ``transform``
    into ``pixels`` (zeros where there is none), and the ``reject`` reason where it fails."""
    torch.set_num_threads(1)  # decoding needs no intra-op threads; they would fight the actors
    paths = [str(path) for path in batch["image"]]
    files = ImageFiles(paths, transform, max_pixels)
    pixels = np.zeros((len(paths), *shape), np.float32)
    reasons = []
    for row, path in enumerate(paths):
        reason = ""
        if path:
            _, tensor, reason = files[row]
            if tensor is not None:
                pixels[row] = tensor.numpy()
        reasons.append(reason or "")
    return {**batch, "pixels": pixels, "reject": np.array(reasons, dtype=object)}


class EmbeddingActor:
    """One model, loaded once per actor; a batch of decoded rows -> their vectors."""

    def __init__(self, spec: str, device: str, precision: str, tta: bool, threads: int):
        torch.set_num_threads(threads)
        self.encoder = load_encoder(spec, device, precision, tta=tta)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, dim = len(batch["text"]), self.encoder.embed_dim
        image = np.zeros((rows, dim), np.float32)
        decoded = [i for i in range(rows) if batch["image"][i] and not batch["reject"][i]]
        if decoded:
            image[decoded] = self.encoder.encode_pixels(torch.from_numpy(batch["pixels"][decoded]))
        text = np.zeros((rows, dim), np.float32)
        texted = [i for i in range(rows) if batch["text"][i]]
        if texted:
            text[texted] = self.encoder.encode_texts([str(batch["text"][i]) for i in texted])
        out = {key: value for key, value in batch.items() if key != "pixels"}
        return {**out, "image_vector": image, "text_vector": text}


def run_batches(dataset: Any) -> Iterator[dict[str, np.ndarray]]:
    """The dataset's output blocks on the driver as they are done; a failure on a worker is
    one RuntimeError with its cause, not a remote traceback."""
    ray = import_ray()
    try:
        yield from dataset.iter_batches(batch_size=None, batch_format="numpy")
    except ray.exceptions.RayError as err:
        raise worker_error(err) from None


def worker_error(err: BaseException) -> RuntimeError:
    """A Ray error as one line: the exception a worker raised (Ray passes on its traceback as
    text, under its own wrappers), else Ray's first line.

    >>> worker_error(RuntimeError("ray::MapWorker()\\nValueError: no such model"))
    RuntimeError('a Ray worker failed: ValueError: no such model')
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    raised = re.findall(r"^(?!ray\.)([A-Za-z_][\w.]*(?:Error|Exception)): (.+)$", text, re.M)
    reason = f"{raised[0][0]}: {raised[0][1]}" if raised else _first_line(err)
    return RuntimeError(f"a Ray worker failed: {reason}")


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__
