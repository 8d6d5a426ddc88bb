"""One question, one answer: the page, the JSON API and ``multimodal search`` asked the same text,
photo and stored-point queries return the same hits in the same order (issue 23)."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import write_recipes5k

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher
from multimodal.cli import main as cli
from multimodal.data.readers import read_records
from ui.app import RESULTS, RecipeApp, launch

TEXTS = ["blue circle cake", "red square", "green triangle pie"]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_encoder):
    root = write_recipes5k(tmp_path_factory.mktemp("r5k"), per_split=9)
    folder = tmp_path_factory.mktemp("store")
    with EdgeStore(folder) as store:
        records = read_records(root)
        index_records(tiny_encoder, store, "dishes", records, workers=0, progress=False)
    return root, folder


def _cli_ids(capsys, folder, *query: str) -> list[str]:
    """The ids ``multimodal search`` prints (the store is the CLI's alone while it runs)."""
    argv = ["search", *query, "--collection", "dishes", "--store", str(folder), "--json"]
    argv += ["-k", str(RESULTS), "--mode", "hybrid", "--no-tta"]
    assert cli(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    return [json.loads(line)["id"] for line in lines if '"rank"' in line]


def test_the_page_the_api_and_the_command_line_answer_alike(indexed, tiny_encoder, capsys):
    root, folder = indexed
    photo = next(root.glob("images/circle/*.jpg"))
    with EdgeStore(folder) as store:
        point = next(iter(store.scroll("dishes", fields=["label"]))).id
    cli_answers = {
        **{("text", t): _cli_ids(capsys, folder, t) for t in TEXTS},
        ("photo", str(photo)): _cli_ids(capsys, folder, "--image", str(photo)),
        ("point", point): _cli_ids(capsys, folder, f"id:{point}"),
    }
    with EdgeStore(folder) as store:
        page = RecipeApp(Searcher(tiny_encoder, store, "dishes"), map_folder=folder / "maps")
        server = launch(page, block=False)
        try:
            with httpx.Client(base_url=server.local_url, timeout=60) as api:
                for (kind, value), from_cli in cli_answers.items():
                    from_page, from_api = _page_and_api(page, api, kind, value)
                    assert from_cli and from_page == from_api == from_cli, (kind, value)
        finally:
            server.close()


def _page_and_api(page: RecipeApp, api: httpx.Client, kind: str, value: str):
    search = {"k": RESULTS, "mode": "hybrid", "target": "image"}
    if kind == "text":
        shown = page.text_to_image(value, None, 1.0, [], "", "", "hybrid", 0.0)[1]
        answer = api.post("/api/search", json={"text": value, **search})
    elif kind == "photo":
        shown = page.text_to_image("", value, 1.0, [], "", "", "hybrid", 0.0)[1]
        with open(value, "rb") as file:
            query = {"query": json.dumps(search)}
            answer = api.post("/api/search/photo", files={"photo": file}, data=query)
    else:
        shown = page.more_like_this(value, [], "", "", 0.0)[1]
        answer = api.get(f"/api/similar/{value}", params={"k": RESULTS, "target": "image"})
    assert answer.status_code == 200, answer.text
    return [hit["id"] for hit in shown], [hit["id"] for hit in answer.json()["hits"]]


def test_a_photos_recipes_are_the_same_on_the_page_the_api_and_the_command_line(
    indexed, tiny_encoder, capsys
):
    """Photo -> recipe texts: the page shows rows (titles), the others hits."""
    root, folder = indexed
    photo = next(root.glob("images/square/*.jpg"))
    argv = ["search", "--image", str(photo), "--target", "text", "--collection", "dishes"]
    argv += ["--store", str(folder), "--json", "-k", str(RESULTS), "--no-tta"]
    assert cli(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    from_cli = [json.loads(line)["title"] for line in lines if '"rank"' in line]
    with EdgeStore(folder) as store:
        page = RecipeApp(Searcher(tiny_encoder, store, "dishes"), map_folder=folder / "maps")
        from_page = [row[2] for row in page.image_to_text(str(photo), [], "", "")[0]]
        server = launch(page, block=False)
        try:
            query = {"query": json.dumps({"k": RESULTS, "target": "text"})}
            url = f"{server.local_url}api/search/photo"
            with open(photo, "rb") as file:
                answer = httpx.post(url, files={"photo": file}, data=query, timeout=60)
        finally:
            server.close()
    from_api = [hit["payload"]["title"] for hit in answer.json()["hits"]]
    assert from_cli and from_page == from_api == from_cli
