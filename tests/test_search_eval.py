"""``multimodal search-eval``: its figures against naive reference computations on hand-made
hits, and one run end to end on a drawn Recipes5k folder into an embedded store."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from conftest import write_recipes5k

from indexer.edge import EdgeStore
from indexer.search_eval import (
    DIVERSITIES,
    PAGE,
    TEXT_KINDS,
    agreement,
    check_unseen,
    dish_scores,
    ingredient_scores,
    title_key,
    variety_scores,
)
from indexer.store import MODES, CollectionSpec, Point, StoredPoint
from multimodal import cli
from multimodal.suggestions import RANKINGS

DISHES = ("pie", "tacos", "curry", "tart")


def hit(label, recipe="r", title="t") -> StoredPoint:
    return StoredPoint(str(uuid.uuid4()), {"label": label, "recipe_id": recipe, "title": title})


def random_results(rng, queries: int = 40, most: int = 14):
    """Result lists of 0 to ``most`` hits (a search may return fewer than asked), and a dish
    type per query."""

    def one() -> StoredPoint:
        return hit(str(rng.choice(DISHES)), str(rng.integers(0, 6)), f"Dish {rng.integers(0, 4)}")

    results = [[one() for _ in range(rng.integers(0, most + 1))] for _ in range(queries)]
    return results, [str(rng.choice(DISHES)) for _ in results]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 5, 10])
def test_dish_scores_match_a_naive_count(seed, k):
    results, labels = random_results(np.random.default_rng(seed))
    top1 = recall = precision = 0.0
    for hits, label in zip(results, labels, strict=True):
        right = 0
        for rank in range(min(k, len(hits))):
            if hits[rank].payload["label"] == label:
                right += 1
                top1 += rank == 0
        recall += right > 0
        precision += right / k
    n = len(results)
    scores = dish_scores(results, labels, k)
    assert scores == pytest.approx(
        {"top1": 100 * top1 / n, f"R@{k}": 100 * recall / n, f"P@{k}": 100 * precision / n}
    )


@pytest.mark.parametrize("seed", range(5))
def test_variety_scores_match_a_naive_count(seed):
    results, labels = random_results(np.random.default_rng(seed), most=20)
    recipes, titles, dishes, first, precision = [], [], [], [], []
    for hits, label in zip(results, labels, strict=True):
        page = hits[:PAGE]
        recipes.append(len(set(h.payload["recipe_id"] for h in page)))
        titles.append(len(set(h.payload["title"].lower() for h in page)))
        dishes.append(len(set(h.payload["label"] for h in page)))
        first.append(len(page) > 0 and page[0].payload["label"] == label)
        precision.append(sum(h.payload["label"] == label for h in page) / PAGE)
    scores = variety_scores(results, labels, PAGE)
    assert scores == pytest.approx(
        {
            "recipes": sum(recipes) / len(results),
            "titles": sum(titles) / len(results),
            "dish_types": sum(dishes) / len(results),
            "top1": 100 * sum(first) / len(results),
            f"P@{PAGE}": 100 * sum(precision) / len(results),
        }
    )


def test_numbered_titles_of_one_dish_count_once():
    assert title_key("Fish and Chips_7") == title_key("fish and  chips") == "fish and chips"
    assert title_key("Croque Madame_2") == "croque madame"
    assert title_key("7 Layer Dip") == "7 layer dip"  # a number that is not a suffix stays
    hits = [hit("x", str(i), title) for i, title in enumerate(["Pie", "Pie_2", "pie_3", "Tart"])]
    assert variety_scores([hits], ["x"])["titles"] == 2
    assert variety_scores([hits], ["x"])["recipes"] == 4


def test_agreement_and_ingredient_scores_match_by_hand():
    assert agreement(["pie", None, "tacos", "pie"], ["pie", "pie", "tacos", "tart"]) == 50.0
    suggested = [["salt", "egg", "flour", "sugar", "milk", "cheese"], ["salt", "beef"]]
    truth = [{"egg", "milk", "butter"}, {"beef", "salsa", "tortilla", "onion"}]
    prevalence = {"salt": 0.4, "egg": 0.2, "flour": 0.3, "sugar": 0.3, "milk": 0.1, "beef": 0.05}
    scores = ingredient_scores(suggested, truth, prevalence)
    # P@5: 2 of 5, 1 of 5; R@10: 2 of 3, 1 of 4; the first five: 7 names, cheese not among them.
    assert scores["P@5"] == pytest.approx(100 * (2 / 5 + 1 / 5) / 2)
    assert scores["R@10"] == pytest.approx(100 * (2 / 3 + 1 / 4) / 2)
    first_five = [0.4, 0.2, 0.3, 0.3, 0.1, 0.4, 0.05]
    assert scores["prevalence@5"] == pytest.approx(100 * sum(first_five) / len(first_five))
    expected = [  # hits of each first five less their prevalences, over 5
        (len(set(names[:5]) & true) - sum(prevalence[n] for n in names[:5])) / 5
        for names, true in zip(suggested, truth, strict=True)
    ]
    assert scores["above chance@5"] == pytest.approx(100 * sum(expected) / len(expected))


def run(args, capsys):
    code = cli.main(["search-eval", "--model", "tiny-random", "--device", "cpu", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_end_to_end_on_a_drawn_recipes5k(tmp_path, capsys):
    data = write_recipes5k(tmp_path / "recipes5k")
    store, out = tmp_path / "store", tmp_path / "figures.json"
    common = ["--data", str(data), "--store", str(store), "--no-progress"]
    code, printed, err = run([*common, "--json", str(out)], capsys)
    assert code == 0, err
    assert "indexed 6, unchanged 0" in printed and "text -> photos" in printed
    figures = json.loads(out.read_text())
    assert figures["indexed"] == 6 and figures["text_queries"] == figures["photo_queries"] == 6
    assert figures["searches"] == (len(TEXT_KINDS) * len(MODES) + 1 + 2 * len(DIVERSITIES)) * 6
    text = figures["text_to_image"]
    percentages = [
        *(v for kind in TEXT_KINDS for mode in MODES for v in text[kind][mode].values()),
        *figures["photo_to_recipe"].values(),
        *(v for r in RANKINGS for k, v in figures["ingredients"][r].items() if "chance" not in k),
    ]
    assert len(percentages) == 27 + 2 + 6 and all(0 <= v <= 100 for v in percentages)
    for ranking in RANKINGS:  # P@5 less the chance hits of the same suggestions
        row = figures["ingredients"][ranking]
        assert -100 <= row["above chance@5"] <= row["P@5"]
    for direction in ("text_to_image", "image_to_image"):
        rows = figures["diversity"][direction]
        assert list(rows) == [f"{d:g}" for d in DIVERSITIES]
        for row in rows.values():
            assert 1 <= row["dish_types"] <= row["titles"] <= row["recipes"] <= PAGE
            assert 0 <= row["top1"] <= 100 and 0 <= row[f"P@{PAGE}"] <= 100
    # Words find the drawn dish by name: keyword search beats the random model's vectors.
    assert figures["text_to_image"]["title"]["sparse"]["top1"] == 100.0
    # A rerun embeds nothing again, and the queries were never indexed.
    code, printed, err = run([*common, "--limit", "2"], capsys)
    assert code == 0 and "indexed 0, unchanged 6" in printed, err
    with EdgeStore(store) as opened:
        assert dict(opened.facet(figures["collection"], "split")) == {"train": 6}


def test_bad_input_is_one_line(tmp_path, capsys):
    data = write_recipes5k(tmp_path / "recipes5k")
    common = ["--data", str(data), "--store", str(tmp_path / "store"), "--no-progress"]
    code, _, err = run([*common, "--query-split", "train"], capsys)
    assert code == 2 and "must differ" in err
    code, _, err = run([*common, "--query-split", "test"], capsys)
    assert code == 2 and "no split 'test'" in err
    with pytest.raises(SystemExit) as exit:
        run([*common, "--diversity", "0,1.5"], capsys)
    assert exit.value.code == 2 and "from 0 to 1" in capsys.readouterr().err


def test_a_collection_holding_query_items_is_refused(tmp_path):
    with EdgeStore(tmp_path / "store") as store:
        store.create_or_open("c", CollectionSpec(2, {"name": "tiny-random"}))
        store.upsert("c", [Point(str(uuid.uuid4()), {"image": [1.0, 0.0]}, {"split": "val"})])
        check_unseen(store, "c", "train")
        with pytest.raises(ValueError, match="holds 1 items of the val split"):
            check_unseen(store, "c", "val")
