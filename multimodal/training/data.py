"""Training data: paired items with false-negative groups, reproducible augmentation, and a
batch sampler that never puts two items of one recipe in a batch."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import transforms as T

from multimodal.data.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from multimodal.data.records import Record
from multimodal.data.text import RecipeTextBuilder

ANCHOR, EXTRA = 0, 1  # roles of an item in a loaded batch: a training pair, or a mined image


@dataclass
class TrainSet:
    records: list[Record]  # paired records (image and text), in a fixed order
    texts: list[str]  # the text of each record, fitted to the context
    tokens: torch.Tensor  # (N, context_length) token ids
    groups: np.ndarray  # (N, 2) ids: column 0 the recipe, column 1 the normalised title
    dishes: np.ndarray  # (N,) dish-type id of each record (-1: none), into dish_names
    dish_names: list[str]  # the dish types, sorted
    ingredients: np.ndarray  # (N, V) 0/1: which of the vocabulary's ingredients each lists
    vocabulary: list[str]  # base ingredients listed by at least MIN_INGREDIENT_COUNT records

    def __len__(self) -> int:
        return len(self.records)


def title_key(title: str) -> str:
    """Titles that differ only in case, punctuation or spacing are the same title."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", title.lower()).split())


def build_train_set(records: Sequence[Record], tokenizer) -> TrainSet:
    """Keep the records with an image and a text that their reader could use (no ``error``);
    tokenise once; number the groups."""
    paired = [r for r in records if r.image is not None and r.has_text and not r.error]
    if not paired:
        raise ValueError("no record has both an image and a text: nothing to train on")
    build = RecipeTextBuilder.for_tokenizer(tokenizer)
    texts = [build(r) for r in paired]
    recipe_keys = [
        r.recipe_id if r.recipe_id is not None else f"#{i}" for i, r in enumerate(paired)
    ]
    title_keys = [title_key(r.title) or f"#{i}" for i, r in enumerate(paired)]
    groups = np.stack([_numbered(recipe_keys), _numbered(title_keys)], axis=1)
    dish_names = sorted({r.label for r in paired if r.label})
    dish_ids = {name: i for i, name in enumerate(dish_names)}
    dishes = np.array([dish_ids.get(r.label, -1) for r in paired], dtype=np.int64)
    vocabulary, ingredients = ingredient_targets(paired)
    return TrainSet(
        paired, texts, tokenizer(texts), groups, dishes, dish_names, ingredients, vocabulary
    )


MIN_INGREDIENT_COUNT = 3  # rarer ingredients are too few examples to learn from


def base_ingredients(record: Record) -> set[str]:
    """The record's base ingredients (its full ingredient lines when it has none), lower case,
    as the page's suggestions count them."""
    names = record.ingredients_simplified or record.ingredients
    return {n.strip().lower() for n in names if n.strip()}


def ingredient_targets(records: Sequence[Record]) -> tuple[list[str], np.ndarray]:
    """The vocabulary (ingredients of at least MIN_INGREDIENT_COUNT records, sorted) and each
    record's 0/1 row over it."""
    per_record = [base_ingredients(r) for r in records]
    counts: dict[str, int] = {}
    for names in per_record:
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    vocabulary = sorted(n for n, c in counts.items() if c >= MIN_INGREDIENT_COUNT)
    column = {name: j for j, name in enumerate(vocabulary)}
    targets = np.zeros((len(records), len(vocabulary)), dtype=np.uint8)
    for i, names in enumerate(per_record):
        targets[i, [column[n] for n in names if n in column]] = 1
    return vocabulary, targets


def _numbered(keys: list[str]) -> np.ndarray:
    numbers: dict[str, int] = {}
    return np.array([numbers.setdefault(k, len(numbers)) for k in keys], dtype=np.int64)


AUGMENT_POLICIES = ("light", "strong")


def train_transform(preprocess_cfg: dict, policy: str = "light") -> Callable:
    """Augmentation for photos, then the model's own normalisation. ``light``: random resized
    crop of 60-100% of the photo, horizontal flip, colour jitter on half of them; ``strong``:
    crops of 35-100%, flip, and TrivialAugmentWide (one random photometric or geometric
    operation at a random strength)."""
    if policy not in AUGMENT_POLICIES:
        raise ValueError(f"augmentation policy must be one of {', '.join(AUGMENT_POLICIES)}")
    size = preprocess_cfg["size"]
    size = size if isinstance(size, int) else tuple(size)
    bicubic = T.InterpolationMode.BICUBIC
    if policy == "light":
        steps = [
            T.RandomResizedCrop(size, scale=(0.6, 1.0), interpolation=bicubic),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.2, 0.2, 0.2, 0.02)], p=0.5),
        ]
    else:
        steps = [
            T.RandomResizedCrop(size, scale=(0.35, 1.0), interpolation=bicubic),
            T.RandomHorizontalFlip(),
            T.TrivialAugmentWide(interpolation=T.InterpolationMode.BILINEAR),
        ]
    return T.Compose(
        [*steps, T.ToTensor(), T.Normalize(preprocess_cfg["mean"], preprocess_cfg["std"])]
    )


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A seed per (run, epoch, item): augmentation is the same whichever worker loads it."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


class PairImages(Dataset):
    """``(index, role)`` -> ``(index, role, pixels or None, reason or None)``."""

    def __init__(
        self, paths: Sequence, transform: Callable, seed: int, max_pixels=DEFAULT_MAX_PIXELS
    ):
        self.paths = [str(p) for p in paths]
        self.transform = transform
        self.seed = seed
        self.max_pixels = max_pixels
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]):
        index, role = key
        try:
            image = load_image(self.paths[index], self.max_pixels)
        except ImageLoadError as err:
            return index, role, None, err.reason
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, self.epoch, index))
            return index, role, self.transform(image), None


def collate_pairs(items) -> dict:
    good = [item for item in items if item[2] is not None]
    return {
        "anchors": [index for index, role, _, _ in good if role == ANCHOR],
        "extras": [index for index, role, _, _ in good if role == EXTRA],
        "pixels": torch.stack([item[2] for item in good]) if good else None,
        "rejects": [(index, reason) for index, _, pixels, reason in items if pixels is None],
    }


class RecipeBatchSampler(Sampler):
    """Batches of ``batch_size`` anchors, never two of one recipe group, in an order fixed by
    (seed, epoch). With mined negatives set, each batch also carries the hard images of its
    anchors (role EXTRA), so they are decoded by the same workers."""

    def __init__(
        self,
        recipe_groups: np.ndarray,
        batch_size: int,
        seed: int,
        indices: Sequence[int] | None = None,
    ):
        if batch_size < 2:
            raise ValueError("contrastive training needs a batch size of at least 2")
        self.recipe_groups = recipe_groups
        # the items that may be drawn (e.g. those whose image could be read)
        self.indices = np.arange(len(recipe_groups)) if indices is None else np.asarray(indices)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.skip = 0
        self.hard_images: np.ndarray | None = None  # (N, k) indices, -1 for none

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def anchor_batches(self) -> list[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.indices)
        batches, current, seen, deferred = [], [], set(), []
        for index in order:
            pending = deferred + [int(index)]
            deferred = []
            for item in pending:
                if self.recipe_groups[item] in seen:
                    deferred.append(item)
                    continue
                current.append(item)
                seen.add(self.recipe_groups[item])
                if len(current) == self.batch_size:
                    batches.append(current)
                    current, seen = [], set()
        return batches  # the last incomplete batch is dropped, as with drop_last

    def __len__(self) -> int:
        return len(self.indices) // self.batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.anchor_batches()[self.skip :]:
            keys = [(i, ANCHOR) for i in batch]
            if self.hard_images is not None:
                extras = {int(j) for j in self.hard_images[batch].ravel() if j >= 0} - set(batch)
                keys += [(j, EXTRA) for j in sorted(extras)]
            yield keys


def index_batch(keys: list[tuple[int, int]]) -> dict:
    """A batch of the cached path: indices only, features come from the cache."""
    return {
        "anchors": [i for i, role in keys if role == ANCHOR],
        "extras": [i for i, role in keys if role != ANCHOR],
        "pixels": None,
        "rejects": [],
    }


@dataclass
class TrainData:
    """The training pairs, how they are batched, their photos, and the mined negatives that
    join each batch."""

    train_set: TrainSet
    sampler: RecipeBatchSampler
    images: PairImages  # decoded only when no feature cache stands in for the photos
    hard_texts: np.ndarray | None = None  # (N, k) mined text negatives of each image
    hard_images: np.ndarray | None = None  # (N, k) mined image negatives of each text
    marked_images: np.ndarray | None = None  # (N, m) fixed ones: Not this marks (--marks)

    @property
    def has_negatives(self) -> bool:
        """Whether batches carry negatives beyond their own pairs (mined or marked)."""
        return self.hard_texts is not None or self.marked_images is not None

    def negative_images(self) -> np.ndarray | None:
        """The image negatives of each text: mined, then marked."""
        found = [t for t in (self.hard_images, self.marked_images) if t is not None]
        return np.concatenate(found, axis=1) if found else None

    def batches(
        self, epoch: int, skip: int, cached: bool, workers: int, seed: int
    ) -> Iterable[dict]:
        """The batches of ``epoch`` after the first ``skip``: photos decoded by ``workers``
        processes, or (``cached``) item indices only."""
        self.sampler.set_epoch(epoch, skip=skip)
        self.sampler.hard_images = self.negative_images()
        self.images.set_epoch(epoch)
        if cached:
            return (index_batch(keys) for keys in self.sampler)
        return DataLoader(
            self.images,
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate_pairs,
            generator=torch.Generator().manual_seed(seed),
        )

    def hard_text_ids(self, anchors: list[int]) -> list[int]:
        """The mined text negatives of a batch's images, without the batch's own texts
        (they are candidates already)."""
        if self.hard_texts is None:
            return []
        mined = {int(j) for j in self.hard_texts[anchors].ravel() if j >= 0}
        return sorted(mined - set(anchors))


def build_train_data(
    train_set: TrainSet, batch_size: int, seed: int, transform: Callable
) -> TrainData:
    """Batches of ``batch_size`` pairs in an order fixed by ``seed``, photos through
    ``transform``."""
    sampler = RecipeBatchSampler(train_set.groups[:, 0], batch_size, seed)
    if len(sampler) == 0:
        raise ValueError(
            f"{len(train_set)} training pairs make no full batch of {batch_size}: "
            "lower --batch-size"
        )
    paths = [r.image for r in train_set.records]
    return TrainData(train_set, sampler, PairImages(paths, transform, seed))
