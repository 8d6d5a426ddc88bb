"""Match probabilities, measured: reliability on Recipes5k val, and "no good match" for queries
from elsewhere.

    python benchmarks/calibration.py --data ../shared/datasets/recipes5k

Indexes the data set (train and val) with the model, then searches each val point's title,
ingredient list and photo as ``multimodal calibrate`` does, and cross-fits: the calibration
is fitted on half of the val points and measured on the other half (two folds, three seeds).

- Reliability: expected calibration error of the hits' probabilities, per direction and
  mode and over all hits, and a reliability plot (``--plot``).
- The cut at the default ``min_score``: the share of held-out val queries that still get
  results in the page's default search (words -> photos in hybrid mode; a photo -> recipes
  and photos), and the share of out-of-domain queries answered "no good match": non-food
  pictures the script draws (noise, shapes, a line of text, gradients, stripes, a
  checkerboard, a flat colour, a plot) and unrelated sentences.
- The baseline, in the same run: one cut on the raw cosine of the top hit (what a fixed
  threshold does), chosen on the fitting half to keep the same share of val queries; the
  ratio of out-of-domain queries each turns away.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

UNRELATED = [
    "quarterly tax report", "how to change a car tyre", "python asyncio tutorial",
    "football match results", "the history of the roman empire", "wireless headphones review",
    "mortgage interest rates", "install ubuntu on a laptop", "jazz concert tonight",
    "train timetable to london", "knitting a wool scarf", "solar panel efficiency",
    "my cat is sleeping on the sofa", "weather forecast for tomorrow", "guitar chords",
    "election polls", "how to write a cover letter", "laptop battery replacement",
    "parking ticket appeal", "moon landing 1969", "quantum computing explained",
    "best hiking boots", "renew my passport", "stock market crash", "learn to play chess",
    "dentist appointment", "car insurance quote", "printer driver download",
    "wedding dress shopping", "mountain bike repair", "kubernetes deployment yaml",
    "ancient egyptian pyramids", "tennis racket strings", "phone screen cracked",
    "cheap flights to tokyo", "garden fence paint", "baby sleep schedule",
    "electric guitar amplifier", "office chair ergonomics", "photosynthesis diagram",
]  # fmt: off
SWEEP = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # min_score values the table shows
KINDS = ("noise", "shapes", "text", "gradient", "stripes", "checkerboard", "flat", "plot")


def draw_non_food(count: int, seed: int = 0) -> list[Image.Image]:
    """``count`` pictures that are not food, cycling through :data:`KINDS`."""
    rng = np.random.default_rng(seed)
    colour = lambda: tuple(int(v) for v in rng.integers(0, 256, 3))  # noqa: E731
    pictures = []
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        image = Image.new("RGB", (320, 240), colour())
        draw = ImageDraw.Draw(image)
        if kind == "noise":
            image = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
        elif kind == "shapes":
            for _ in range(6):
                x, y, w, h = rng.integers(0, 300), rng.integers(0, 220), *rng.integers(20, 120, 2)
                draw.ellipse([x, y, x + w, y + h], fill=colour())
        elif kind == "text":
            draw.text((10, 110), "Quarterly report: revenue up 4%", fill=(0, 0, 0))
        elif kind == "gradient":
            ramp = np.linspace(0, 1, 320)[None, :, None] * np.ones((240, 1, 3))
            image = Image.fromarray((ramp * rng.integers(64, 256, 3)).astype(np.uint8))
        elif kind == "stripes":
            for x in range(0, 320, 24):
                draw.rectangle([x, 0, x + 11, 240], fill=colour())
        elif kind == "checkerboard":
            for x in range(0, 320, 40):
                for y in range(0, 240, 40):
                    if (x // 40 + y // 40) % 2:
                        draw.rectangle([x, y, x + 39, y + 39], fill=(0, 0, 0))
        elif kind == "plot":
            points = [(x, 120 + int(80 * np.sin(x / 30 + i))) for x in range(0, 320, 8)]
            draw.line(points, fill=(0, 0, 200), width=3)
            draw.line([(0, 230), (320, 230)], fill=(0, 0, 0), width=2)
        pictures.append(image)
    return pictures


def best_per_query(calibration, samples, key_of, asked, domains) -> dict[int, tuple]:
    """For each query index in ``asked``: (top probability, top cosine) of its default search
    (``key_of(index)`` gives the curve key or None)."""
    best = {}
    for i in asked:
        key = key_of(i)
        if key is None or key not in samples.cosines:
            continue
        rows = np.flatnonzero(np.asarray(samples.asked[key]) == i)
        if not len(rows):
            continue
        cosines = np.asarray(samples.cosines[key])[rows]
        probability = calibration.probability(key, cosines, domains[i])
        best[i] = (float(probability.max()), float(cosines.max()))
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/recipes5k")
    parser.add_argument("--model", default="recipe")
    parser.add_argument("--store", default=None, help="an embedded store already holding it")
    parser.add_argument("--collection", default="recipes5k")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ood", type=int, default=80, help="non-food pictures drawn")
    parser.add_argument("--plot", default=None, help="write the reliability plot (PNG) here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        return run(args, Path(scratch))


def run(args, scratch: Path) -> int:
    from indexer.calibrate import Query, calibration_queries, collect, encode_queries
    from indexer.edge import EdgeStore
    from indexer.pipeline import index_records
    from indexer.search import Searcher
    from multimodal.data.readers import read_records
    from multimodal.encoder import load_encoder

    encoder = load_encoder(args.model)
    with EdgeStore(Path(args.store) if args.store else scratch / "store") as store:
        if args.store is None:
            records = [*read_records(args.data, "train"), *read_records(args.data, "val")]
            index_records(encoder, store, args.collection, records, progress=False)
        searcher = Searcher(encoder, store, args.collection)
        queries, gallery = calibration_queries(store, args.collection, "label", "val", 10**6)
        pictures = draw_non_food(args.ood)
        for n, picture in enumerate(pictures):
            picture.save(scratch / f"ood-{n}.png")
        ood = [Query("", "text", text, frozenset()) for text in UNRELATED]
        ood += [
            Query("", "image", scratch / f"ood-{n}.png", frozenset()) for n in range(len(pictures))
        ]
        raw = encode_queries(encoder, queries + ood)
        samples = collect(searcher, queries + ood, raw, "label")
    report(args, queries, ood, samples, gallery, encoder)
    return 0


def report(args, queries, ood, samples, gallery, encoder) -> None:
    from indexer.calibrate import Samples, fit
    from indexer.trust import DEFAULT_MIN_SCORE
    from multimodal.calibration import expected_calibration_error
    from multimodal.encoder import model_stamp

    n_val = len(queries)
    kinds = [q.kind for q in queries + ood]
    eces, kept, turned, base_turned, pooled, sweeps = [], [], [], [], ([], [], []), []
    points = sorted({q.id for q in queries})
    for seed in range(args.seeds):
        order = np.random.default_rng(seed).permutation(len(points))
        halves = (set(np.asarray(points)[order[::2]]), set(np.asarray(points)[order[1::2]]))
        for fold in (0, 1):
            fitting = {i for i, q in enumerate(queries) if q.id in halves[fold]}
            held = [i for i in range(n_val) if i not in fitting]
            calibration = fit(
                _subset(samples, fitting, kinds, Samples), gallery, model_stamp(encoder), {}
            )
            domains = _domains(calibration, samples, kinds)
            result = _measure(calibration, samples, queries, ood, fitting, held, domains)
            eces.append(result["ece"])
            sweeps.append(result["sweep"])
            kept.append(result["kept"])
            turned.append(result["turned"])
            base_turned.append(result["baseline_turned"])
            for part, values in zip(pooled, result["pooled"], strict=True):
                part.extend(values)
    ece_all = expected_calibration_error(pooled[0], pooled[1])
    print(
        f"model {args.model}: {n_val} val queries ({len(points)} points), {len(ood)} out of domain"
    )
    print(f"folds: 2 x {args.seeds} seeds; default min_score {DEFAULT_MIN_SCORE}")
    for key in sorted(eces[0]):
        values = [e[key] for e in eces if key in e]
        print(f"  ECE {key:<22} {np.mean(values):.3f} (max {np.max(values):.3f})")
    print(f"ECE, all held-out hits pooled:   {ece_all:.3f}")
    print(f"val queries still answered:      {np.mean(kept):.3f}")
    print(f"out of domain -> no good match:  {np.mean(turned):.3f} (texts and photos)")
    print(f"baseline, a raw cosine cut:      {np.mean(base_turned):.3f}")
    print(f"ratio: {np.mean(turned) / max(np.mean(base_turned), 1e-9):.2f}x")
    print("min_score  val answered  unrelated texts refused  non-food photos refused")
    for cut in SWEEP:
        val, texts, photos = np.mean([sweep[cut] for sweep in sweeps], axis=0)
        print(f"{cut:9.2f}  {val:12.3f}  {texts:23.3f}  {photos:23.3f}")
    if args.plot:
        _plot(pooled, args.plot)


def _subset(samples, indices, kinds, cls):
    """The samples of the queries in ``indices`` only (by query index)."""
    part = cls()
    for key, asked in samples.asked.items():
        rows = [r for r, i in enumerate(asked) if i in indices]
        part.cosines[key] = [samples.cosines[key][r] for r in rows]
        part.relevant[key] = [samples.relevant[key][r] for r in rows]
        part.asked[key] = [asked[r] for r in rows]
    for kind in samples.vectors:
        which = [n for n, i in enumerate(_of_kind(kinds, kind)) if i in indices]
        part.vectors[kind] = samples.vectors[kind][which]
        part.lengths[kind] = samples.lengths[kind][which]
    return part


def _of_kind(kinds, kind):
    return [i for i, k in enumerate(kinds) if k == kind]


def _domains(calibration, samples, kinds) -> list[float]:
    domains = [1.0] * len(kinds)
    for kind in samples.vectors:
        found = calibration.domain_of(kind, samples.vectors[kind], samples.lengths[kind])
        for i, p in zip(_of_kind(kinds, kind), found, strict=True):
            domains[i] = float(p)
    return domains


def _measure(calibration, samples, queries, ood, fitting, held, domains) -> dict:
    from indexer.trust import DEFAULT_MIN_SCORE
    from multimodal.calibration import expected_calibration_error

    n_val = len(queries)
    everyone = queries + ood
    ece, pooled = {}, ([], [], [])
    for key, asked in samples.asked.items():
        rows = [r for r, i in enumerate(asked) if i in set(held)]
        if not rows:
            continue
        cosines = np.asarray(samples.cosines[key])[rows]
        doms = np.asarray([domains[asked[r]] for r in rows])
        probability = calibration.probability(key, cosines, doms)
        relevant = np.asarray(samples.relevant[key])[rows]
        ece[key] = expected_calibration_error(probability, relevant)
        pooled[0].extend(probability)
        pooled[1].extend(relevant)
        pooled[2].extend([key] * len(rows))

    def searches(i):  # the page's default searches for query i
        if everyone[i].kind == "text":
            hybrid = ("text->image/hybrid", i) in asked_pairs
            return ["text->image/hybrid" if hybrid else "text->image/dense"]
        return ["image->text/dense", "image->image/dense"]

    asked_pairs = {(key, i) for key, asked in samples.asked.items() for i in set(asked)}
    tops = {}
    for i in [*fitting, *held, *range(n_val, len(everyone))]:
        found = [
            best_per_query(calibration, samples, lambda _i, k=key: k, [i], domains).get(i)
            for key in searches(i)
        ]
        tops[i] = [f for f in found if f is not None]
    passes = {i: any(p >= DEFAULT_MIN_SCORE for p, _ in tops[i]) for i in tops}
    kept = np.mean([passes[i] for i in held])
    # the baseline: one cut on the top raw cosine, keeping as many fitting queries
    fit_tops = [max(c for _, c in tops[i]) for i in fitting if tops[i]]
    threshold = np.quantile(fit_tops, 1 - kept)
    outside = range(n_val, len(everyone))

    def ood_kind(i):
        return everyone[i].kind

    sweep = {
        cut: (
            np.mean([any(p >= cut for p, _ in tops[i]) for i in held]),
            np.mean(
                [not any(p >= cut for p, _ in tops[i]) for i in outside if ood_kind(i) == "text"]
            ),
            np.mean(
                [not any(p >= cut for p, _ in tops[i]) for i in outside if ood_kind(i) == "image"]
            ),
        )
        for cut in SWEEP
    }
    return {
        "sweep": sweep,
        "ece": ece,
        "pooled": pooled,
        "kept": kept,
        "turned": np.mean([not passes[i] for i in outside]),
        "baseline_turned": np.mean([all(c < threshold for _, c in tops[i]) for i in outside]),
    }


def _plot(pooled, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from multimodal.calibration import reliability

    probability, relevant, keys = (np.asarray(part) for part in pooled)
    figure, axes = plt.subplots(figsize=(5.5, 5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for key in sorted(set(keys)):
        inside = keys == key
        bins = reliability(probability[inside], relevant[inside])
        axes.plot([b[0] for b in bins], [b[1] for b in bins], marker="o", markersize=3, label=key)
    axes.set_xlabel("match probability given")
    axes.set_ylabel("share of hits that were relevant (same dish type)")
    axes.set_title("Reliability on held-out Recipes5k val queries")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"reliability plot written to {path}")


if __name__ == "__main__":
    sys.exit(main())
