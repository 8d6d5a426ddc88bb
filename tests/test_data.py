"""Readers (Recipes5k layout, manifests, folders) and the recipe-text builder."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import RECIPES5K, draw_image, write_recipes5k

from multimodal.data import (
    RecipeTextBuilder,
    dataset_splits,
    read_records,
    recipe_text,
    token_counter,
)
from multimodal.encoder import load_encoder


def test_recipes5k_reader_follows_the_official_layout(recipes5k_folder):
    assert dataset_splits(recipes5k_folder) == ["train", "val"]
    val = read_records(recipes5k_folder, "val")
    assert len(val) == 6 and {r.split for r in val} == {"val"}
    first = val[0]
    assert first.image == recipes5k_folder / "images" / "square/0_val_red_square.jpg"
    assert first.image.is_file()
    assert first.title == "Red Square Cake"
    assert first.ingredients == ["red food colouring", "all-purpose flour", "square mould", "sugar"]
    assert first.ingredients_simplified == ["colouring", "flour", "mould", "sugar"]
    assert first.label == "square" and first.recipe_id == "6" and first.source == "recipes5k"
    assert first.relative_image == "images/square/0_val_red_square.jpg"
    assert len(read_records(recipes5k_folder)) == 12


def test_recipes5k_accepts_a_test_split(tmp_path):
    root = write_recipes5k(tmp_path / "r5k", splits=("train", "val", "test"), per_split=3)
    assert dataset_splits(root) == ["train", "val", "test"]
    assert [r.split for r in read_records(root, "test")] == ["test"] * 3


def test_recipes5k_missing_split_names_the_present_ones(recipes5k_folder):
    with pytest.raises(ValueError, match="no split 'test'; present: train, val"):
        read_records(recipes5k_folder, "test")


def test_recipes5k_bad_label_is_reported_with_its_line(recipes5k_folder):
    (recipes5k_folder / "annotations" / "val_labels.txt").write_text("6\n7\n99999\n9\n10\n11\n")
    with pytest.raises(ValueError, match="line 3: '99999'"):
        read_records(recipes5k_folder, "val")


def test_csv_manifest_keeps_extra_columns_and_resolves_paths(tmp_path):
    draw_image(tmp_path / "photos" / "a.png")
    draw_image(tmp_path / "photos" / "b.png", "blue", "circle")
    with open(tmp_path / "items.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filepath", "caption", "category", "split", "photographer"])
        writer.writerow(["photos/a.png", "a red square", "shapes", "train", "ann"])
        writer.writerow(["photos/b.png", "a blue circle", "shapes", "val", "bob"])
    records = read_records(tmp_path / "items.csv")
    assert [r.title for r in records] == ["a red square", "a blue circle"]
    assert records[0].image == (tmp_path / "photos" / "a.png").resolve()
    assert records[0].label == "shapes" and records[0].extra == {"photographer": "ann"}
    assert dataset_splits(tmp_path / "items.csv") == ["train", "val"]
    assert [r.title for r in read_records(tmp_path / "items.csv", "val")] == ["a blue circle"]


def test_jsonl_manifest_with_named_columns_and_ingredient_lists(tmp_path):
    draw_image(tmp_path / "x.png")
    rows = [
        {"img": "x.png", "desc": "tomato soup", "ingredients": ["tomato", "basil"]},
        {"img": "", "desc": "a caption without a photo", "ingredients": "salt; pepper"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    records = read_records(tmp_path / "m.jsonl", image_column="img", caption_column="desc")
    assert records[0].ingredients == ["tomato", "basil"]
    assert records[1].image is None and records[1].ingredients == ["salt", "pepper"]


def test_manifest_without_known_columns_names_the_flags(tmp_path):
    (tmp_path / "m.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="--image-column and --caption-column"):
        read_records(tmp_path / "m.csv")


def test_image_folder_reads_sidecar_captions_and_labels(tmp_path):
    draw_image(tmp_path / "cakes" / "one.jpg")
    (tmp_path / "cakes" / "one.txt").write_text("a red square cake\n")
    draw_image(tmp_path / "loose.png", "green", "triangle")
    records = read_records(tmp_path)
    by_name = {r.image.name: r for r in records}
    assert by_name["one.jpg"].title == "a red square cake" and by_name["one.jpg"].label == "cakes"
    assert by_name["loose.png"].title == "" and by_name["loose.png"].label is None


def test_missing_data_path_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no data set at"):
        read_records(tmp_path / "nowhere")


def test_recipe_text_reads_naturally():
    assert recipe_text("Apple Pie", ["apples", "flour"]) == "Apple Pie. Ingredients: apples, flour."
    assert recipe_text("a red square", []) == "a red square"


@pytest.mark.parametrize(
    "spec", [pytest.param("recipe-starter", marks=pytest.mark.slow), "tiny-random"]
)
def test_builder_fits_context_without_cutting_the_title(spec):
    tokenizer = load_encoder(spec, device="cpu").tokenizer
    count = token_counter(tokenizer)
    builder = RecipeTextBuilder.for_tokenizer(tokenizer)
    title = "Grandma's Extra Crispy Southern Fried Chicken"
    ingredients = [f"ingredient number {i} finely chopped" for i in range(60)]
    text = builder.build(title, ingredients)
    assert text.startswith(title + ". Ingredients: ingredient number 0")
    assert count(text) <= tokenizer.context_length
    kept = text.count("ingredient number")
    # one more ingredient would not have fitted
    assert count(recipe_text(title, ingredients[: kept + 1])) > tokenizer.context_length
    assert builder.build(title, ingredients[:2]) == recipe_text(title, ingredients[:2])


@pytest.mark.slow
@pytest.mark.skipif(not RECIPES5K.is_dir(), reason="real Recipes5k not beside the repository")
def test_real_recipes5k_reads_completely():
    train, val = read_records(RECIPES5K, "train"), read_records(RECIPES5K, "val")
    assert (len(train), len(val)) == (3409, 634)
    assert len({r.label for r in train + val}) == 101
    assert all(r.image.is_file() and r.title and r.ingredients for r in val)


# -- encodings and columns (issue 10, defects 6 and 7) ------------------------------------------


def _write_csv(path, rows, encoding):
    with open(path, "w", newline="", encoding=encoding) as handle:
        csv.writer(handle).writerows(rows)
    return path


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le-bom", "utf-32"])
def test_manifest_with_a_byte_order_mark_is_read_like_any_other(tmp_path, encoding):
    # Spreadsheets save "CSV UTF-8" with a BOM, and "Unicode text" as UTF-16 with one.
    draw_image(tmp_path / "photos" / "a.png")
    rows = [["image", "caption"], ["photos/a.png", "crème brûlée"]]
    if encoding == "utf-16-le-bom":
        data = b"\xff\xfe" + "\r\n".join(",".join(r) for r in rows).encode("utf-16-le")
        (tmp_path / "m.csv").write_bytes(data)
    else:
        _write_csv(tmp_path / "m.csv", rows, encoding)
    (record,) = read_records(tmp_path / "m.csv")
    assert record.image == (tmp_path / "photos" / "a.png").resolve()
    assert record.title == "crème brûlée" and record.extra == {}
    line = json.dumps({"image": "photos/a.png", "caption": "crème brûlée"}) + "\n"
    (tmp_path / "m.jsonl").write_bytes(line.encode(encoding.replace("-le-bom", "")))
    (record,) = read_records(tmp_path / "m.jsonl")
    assert record.image is not None and record.title == "crème brûlée"


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_a_manifest_that_is_not_utf8_is_one_error_naming_the_file_and_the_fix(tmp_path, encoding):
    manifest = _write_csv(tmp_path / "m.csv", [["image", "caption"], ["a.png", "crème"]], encoding)
    with pytest.raises(ValueError, match=r"m\.csv is not UTF-8 text .*line 2.*save it as UTF-8"):
        read_records(manifest)


def test_a_manifest_missing_its_image_column_names_the_columns_it_has(tmp_path):
    # Before: a CSV whose image column was not found became text-only points, exit 0.
    manifest = _write_csv(tmp_path / "m.csv", [["foto", " Caption "], ["a.png", "soup"]], "utf-8")
    with pytest.raises(ValueError, match=r"no image column .*'foto', ' Caption '.*--image-column"):
        read_records(manifest)
    with pytest.raises(ValueError, match=r"m\.csv has no column 'img' \(its columns: 'foto'"):
        read_records(manifest, image_column="img")
    (record,) = read_records(manifest, image_column="foto")  # " Caption " is found
    assert record.title == "soup" and record.image.name == "a.png"
    (tmp_path / "t.jsonl").write_text('{"image": "a.png"}\n')
    with pytest.raises(ValueError, match=r"no caption column .*'image'.*--caption-column"):
        read_records(tmp_path / "t.jsonl")


def test_an_unreadable_caption_file_marks_only_its_own_image(tmp_path):
    draw_image(tmp_path / "good.png")
    draw_image(tmp_path / "creme.png")
    (tmp_path / "creme.txt").write_bytes("crème brûlée".encode("latin-1"))
    draw_image(tmp_path / "tea.png")
    (tmp_path / "tea.txt").write_text("green tea", encoding="utf-16")  # with a BOM: read right
    records = {r.image.name: r for r in read_records(tmp_path)}
    assert records["good.png"].problem() is None and records["tea.png"].title == "green tea"
    assert records["tea.png"].problem() is None
    reason = records["creme.png"].problem()
    assert "creme.txt is not UTF-8 text" in reason and "save it as UTF-8" in reason


def test_items_that_cannot_be_stored_say_why_and_the_others_do_not(tmp_path):
    draw_image(tmp_path / "a.png")
    rows = [
        '{"image": "a.png", "caption": "fine", "stars": 4.5}',
        '{"image": "caf\\udce9.png", "caption": "a name that is not UTF-8"}',
        '{"image": "a\\u0000.png", "caption": "a NUL in the name"}',
        '{"image": "a.png", "caption": "a lone \\ud800 surrogate"}',
        '{"image": "a.png", "caption": "not a number", "stars": NaN}',
        '{"image": "a.png", "caption": "deep", "tree": ' + "[" * 40 + "]" * 40 + "}",
        '{"image": "a.png", "caption": "huge", "count": ' + "9" * 30 + "}",
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    problems = [r.problem() for r in read_records(tmp_path / "m.jsonl")]
    assert problems[0] is None
    assert "file name is not valid UTF-8" in problems[1]
    assert "not a valid file name" in problems[2]
    assert "'title' field is not valid UTF-8" in problems[3]
    assert "'stars' field holds NaN or infinity" in problems[4]
    assert "'tree' field is nested deeper than" in problems[5]
    assert "'count' field holds a number too large" in problems[6]


def test_a_csv_row_with_more_cells_than_the_header_says_so(tmp_path):
    draw_image(tmp_path / "a.png")
    rows = [["image", "caption"], ["a.png", "salt", " pepper"], ["a.png", "tea", ""]]
    records = read_records(_write_csv(tmp_path / "m.csv", rows, "utf-8"))
    assert "more cells than the header" in records[0].problem()
    assert records[1].problem() is None and records[1].extra == {}


def test_an_image_folder_under_a_hidden_folder_is_read(tmp_path):
    draw_image(tmp_path / ".cache" / "photos" / "a.png")
    draw_image(tmp_path / ".cache" / "photos" / ".thumbs" / "b.png")
    records = read_records(tmp_path / ".cache" / "photos")
    assert [r.image.name for r in records if r.error is None] == ["a.png"]
    (hidden,) = [r for r in records if r.error is not None]  # one entry: nothing below it read
    assert hidden.image.name == ".thumbs" and "hidden" in hidden.error


def test_a_manifest_with_its_image_column_twice_is_an_error(tmp_path):
    manifest = _write_csv(
        tmp_path / "m.csv", [["image", "caption", "image"], ["a", "b", "c"]], "utf-8"
    )
    with pytest.raises(ValueError, match=r"m\.csv has the column 'image' twice"):
        read_records(manifest)
