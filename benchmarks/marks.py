"""A model that learns from its user's marks, measured: a simulated user on Recipes5k.

    python benchmarks/marks.py --data ../shared/datasets/recipes5k --out runs/marks-bench

1. The training photos are indexed with ``--model`` (the shipped recipe model) into an
   embedded store: the user's collection. Val photos stay out of it, so no val photo is ever
   marked.
2. The simulated user searches the words of ``--queries`` val recipes (title and ingredients,
   as the eval embeds them; drawn once with ``--pick-seed``) through the search service, as
   the page does, and marks each of the top ``--top`` photos Good when its dish type is the
   query's and Not this when not, through :class:`indexer.marks.MarkBook`: the marks file
   ``multimodal train --marks`` reads.
3. For each ``--seeds`` seed, two fine-tunes from the same model with the same options
   (``--train-args``): the control without marks, and ``--marks COLLECTION``. Both are
   evaluated at their last epoch (selection on val would see the marked queries).
4. Every model, the starting one too, is scored on the val split: text -> photo and photo ->
   text over all val pairs, counted separately for the marked queries and for the *other*
   val queries (never marked, never trained on): dish type of the top hit and R@10 (R@1 too).

Prints each figure per model (mean ± std over seeds) and the gain of the marks over the
control fine-tune, measured in the same run.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# A gentle fine-tune of a trained model (lower rate, 3 epochs): the shipped recipe's negatives
# without its dish-type loss, whose classifier would start from scratch. Unaugmented, so the
# seeds share one feature cache.
TRAIN_ARGS = (
    "--no-augment --epochs 3 --patience 0 --lr 5e-5 --warmup-steps 10 "
    "--hard-negatives 2 --mining-strategy random --mining-margin 0.1 --mining-dish other "
    "--warmup-epochs 1"
)
FIGURES = ("dish@1 t->i", "R@10 t->i", "R@1 t->i", "dish@1 i->t", "R@10 i->t", "R@1 i->t")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/recipes5k")
    parser.add_argument("--model", default="recipe", help="the model without marks")
    parser.add_argument("--out", default="runs/marks-bench", help="run folders go here")
    parser.add_argument("--store", default=None, help="keep the store here (default: temporary)")
    parser.add_argument("--collection", default="recipes5k-train")
    parser.add_argument("--queries", type=int, default=200, help="val queries the user marks")
    parser.add_argument("--top", type=int, default=10, help="results marked per query")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pick-seed", type=int, default=0, help="draws the marked queries")
    parser.add_argument("--train-args", default=TRAIN_ARGS, help="options of both fine-tunes")
    parser.add_argument("--feature-cache", default=None, help="multimodal train's cache folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        return run(args, Path(args.store) if args.store else Path(scratch) / "store")


def run(args, store_folder: Path) -> int:
    from indexer.edge import EdgeStore
    from multimodal.data.readers import read_records
    from multimodal.encoder import load_encoder

    val = read_records(args.data, "val")
    picked = np.random.default_rng(args.pick_seed).permutation(len(val))[: args.queries]
    marked = np.zeros(len(val), dtype=bool)
    marked[picked] = True
    encoder = load_encoder(args.model)
    with EdgeStore(store_folder) as store:
        goods, bads = simulate_user(args, encoder, store, [val[i] for i in sorted(picked)])
    print(f"the simulated user marked {goods} Good and {bads} Not this on {args.queries} queries")
    models = {"without marks": [args.model]}
    for seed in args.seeds:
        for name, extra in (("control", ""), ("marks", f" --marks {args.collection}")):
            out = Path(args.out) / f"{name}-seed{seed}"
            extra += f" --marks-store {store_folder}" if extra else ""
            fine_tune(args, out, seed, extra)
            models.setdefault(f"fine-tuned, {name}", []).append(str(out / "last"))
    scores = {name: [score(spec, val, marked) for spec in specs] for name, specs in models.items()}
    report(scores)
    return 0


def simulate_user(args, encoder, store, queries) -> tuple[int, int]:
    """Index the training photos, then search each query's words and mark the top hits by
    dish type; ``(Good, Not this)`` counts."""
    from indexer.marks import MarkBook
    from indexer.pipeline import index_records
    from indexer.search import Searcher
    from indexer.service import SearchQuery, SearchService
    from multimodal.data.readers import read_records
    from multimodal.data.text import RecipeTextBuilder

    if args.collection not in store.collections():
        train = read_records(args.data, "train")
        index_records(encoder, store, args.collection, train, progress=False)
    service = SearchService(Searcher(encoder, store, args.collection))
    book = MarkBook(store, args.collection)
    book.path.unlink(missing_ok=True)  # a rerun marks afresh
    build = RecipeTextBuilder.for_tokenizer(encoder.tokenizer)
    counts = [0, 0]
    for record in queries:
        words = build(record)
        answer = service.search(SearchQuery(text=words, k=args.top, mode="dense", min_score=0))
        for hit in answer.hits:
            good = hit.payload.get("label") == record.label
            book.record({"text": words}, hit.id, good=good)
            counts[0 if good else 1] += 1
    return counts[0], counts[1]


def fine_tune(args, out: Path, seed: int, extra: str) -> None:
    """``multimodal train`` from ``args.model`` (skipped when ``out`` finished before)."""
    if (out / "last").is_dir():
        return
    command = f"multimodal train --model {args.model} --data {args.data} --out {out} "
    command += f"--seed {seed} --no-progress {args.train_args}{extra}"
    if args.feature_cache:
        command += f" --feature-cache {args.feature_cache}"
    print("$", command, flush=True)
    argv = [sys.executable, "-m", *shlex.split(command)]  # this Python's multimodal
    run = subprocess.run(argv, capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"{command}\nfailed:\n{run.stderr[-3000:]}")


def score(spec: str, val, marked: np.ndarray) -> dict[str, dict[str, float]]:
    """The figures of the model ``spec`` for the marked and the other val queries."""
    from multimodal.embedding import embed_pairs
    from multimodal.encoder import load_encoder

    pairs = embed_pairs(load_encoder(spec), val, progress=False)
    index = {id(r): i for i, r in enumerate(val)}
    kept = np.array([index[id(r)] for r in pairs.records])
    labels = np.array([r.label for r in pairs.records])
    found = {}
    for name, queries in (("marked", marked[kept]), ("other", ~marked[kept])):
        found[name] = {
            **direction(pairs.text, pairs.image, labels, queries, "t->i"),
            **direction(pairs.image, pairs.text, labels, queries, "i->t"),
        }
    return found


def direction(queries, gallery, labels, chosen, arrow) -> dict[str, float]:
    """Dish type of the top hit, R@1 and R@10 of the ``chosen`` queries over all of
    ``gallery`` (query i's true item is gallery i)."""
    rows = np.flatnonzero(chosen)
    scores = queries[rows] @ gallery.T
    ranks = 1 + (scores > scores[np.arange(len(rows)), rows][:, None]).sum(axis=1)
    top = scores.argmax(axis=1)
    return {
        f"dish@1 {arrow}": 100.0 * float(np.mean(labels[top] == labels[rows])),
        f"R@1 {arrow}": 100.0 * float(np.mean(ranks <= 1)),
        f"R@10 {arrow}": 100.0 * float(np.mean(ranks <= 10)),
    }


def report(scores: dict[str, list[dict]]) -> None:
    for group in ("other", "marked"):
        print(f"\n{group} val queries")
        print(f"{'model':<22}" + "".join(f"{f:>16}" for f in FIGURES))
        for name, runs in scores.items():
            cells = []
            for figure in FIGURES:
                values = np.array([run[group][figure] for run in runs])
                spread = f" ± {values.std():.1f}" if len(values) > 1 else ""
                cells.append(f"{values.mean():.1f}{spread}")
            print(f"{name:<22}" + "".join(f"{c:>16}" for c in cells))
        control = scores.get("fine-tuned, control")
        marks = scores.get("fine-tuned, marks")
        if control and marks:
            for figure in ("dish@1 t->i", "R@10 t->i", "dish@1 i->t", "R@10 i->t"):
                pairs = zip(marks, control, strict=True)
                gains = [m[group][figure] - c[group][figure] for m, c in pairs]
                mean_control = np.mean([c[group][figure] for c in control])
                ratio = np.mean([m[group][figure] for m in marks]) / max(mean_control, 1e-9)
                shown = " / ".join(f"{g:+.1f}" for g in gains)
                print(f"  marks vs control, {figure}: {shown} per seed (x{ratio:.3f})")


if __name__ == "__main__":
    sys.exit(main())
