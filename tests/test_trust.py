"""Scores that mean something: calibration curves and query domains fitted and read back, and
a calibrated collection searched from the CLI and the JSON API (match probability per hit,
--min-score / min_score, "no good match" with the nearest miss)."""

from __future__ import annotations

import json
import os

import httpx
import numpy as np
import pytest
from conftest import write_recipes5k

from indexer.edge import EdgeStore
from indexer.pipeline import index_records
from indexer.search import Searcher
from indexer.service import SearchQuery, SearchService
from indexer.trust import DEFAULT_MIN_SCORE, cut
from multimodal.calibration import (
    Calibration,
    Curve,
    Domain,
    expected_calibration_error,
    find_calibration,
    home_path,
    reliability,
)
from multimodal.cli import main as cli
from multimodal.data.readers import read_records
from multimodal.encoder import model_stamp
from ui.app import RecipeApp, launch


def test_an_isotonic_curve_is_monotone_and_calibrated_on_its_data():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 5000)
    relevant = rng.uniform(0, 1, 5000) < scores**2  # the truth: P(relevant) = score^2
    curve = Curve.fit(scores, relevant)
    grid = curve(np.linspace(-1, 2, 50))
    assert np.all(np.diff(grid) >= 0) and grid.min() >= 0 and grid.max() <= 1
    assert abs(float(curve(0.8)) - 0.64) < 0.08
    assert expected_calibration_error(curve(scores), relevant) < 0.03
    assert expected_calibration_error(scores, relevant) > 0.1  # the raw score is not
    bins = reliability(curve(scores), relevant)
    assert sum(n for *_, n in bins) == 5000
    assert all(abs(p - seen) < 0.1 for p, seen, n in bins if n > 200)


def test_a_domain_tells_a_far_or_long_query_from_held_out_ones():
    rng = np.random.default_rng(1)
    centre = np.ones(8) / np.sqrt(8)

    def near(n):
        vectors = centre + 0.1 * rng.standard_normal((n, 8))
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    domain = Domain.fit(near(500), near(300), rng.normal(5.0, 0.3, 300))
    held_out = domain.p_value(near(400), rng.normal(5.0, 0.3, 400))
    assert 0.35 < held_out.mean() < 0.65 and np.mean(held_out < 0.05) < 0.1
    far = -centre  # the other side of the sphere, usual length
    assert domain.p_value(far[None], [5.0])[0] < 0.01
    assert domain.p_value(near(1), [9.0])[0] < 0.05  # usual direction, far too long


def test_a_calibration_is_written_read_and_matched_to_its_model(tmp_path):
    rng = np.random.default_rng(2)
    curve = Curve.fit(rng.uniform(0, 1, 200), rng.uniform(0, 1, 200) < 0.5)
    units = rng.standard_normal((50, 4))
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    domain = Domain.fit(units, units[:20], np.ones(20))
    stamp = {"name": "m", "arch": "a", "weights_sha256": "abc"}
    made = Calibration(stamp, {"text->image/dense": curve}, {"image": domain}, {"split": "val"})
    back = Calibration.load(made.save(tmp_path / "c.npz"))
    assert back.fitted_on == {"split": "val"} and back.alpha == made.alpha
    assert np.array_equal(back.relevance["text->image/dense"].x, curve.x)
    assert np.array_equal(back.domain["image"].precision, domain.precision)
    # a mode without its own curve borrows its direction's dense one; none: None
    assert back.relevance_of("text->image/hybrid", [0.3]) == curve([0.3])
    assert back.probability("image->text/dense", [0.3]) is None
    assert back.fits({**stamp, "name": "/elsewhere/m", "tta": True})
    assert not back.fits({**stamp, "weights_sha256": "other"})
    (tmp_path / "bad.npz").write_bytes(b"not a calibration")
    with pytest.raises(ValueError, match="bad.npz is not a calibration file"):
        Calibration.load(tmp_path / "bad.npz")


def test_the_cut_keeps_probable_hits_or_names_the_nearest_miss():
    from indexer.store import StoredPoint

    hits = [StoredPoint(str(i), probability=p) for i, p in enumerate([0.1, 0.6, 0.3])]
    assert [h.id for h in cut(hits, 0.25)[0]] == ["1", "2"]
    kept, near = cut(hits, 0.9)
    assert kept == [] and near.id == "1"
    assert cut(hits, None) == (hits, None)
    unjudged = [StoredPoint("x")]
    assert cut(unjudged, 0.5) == (unjudged, None)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, tiny_encoder):
    """A drawn collection (train and val) calibrated by ``multimodal calibrate`` into its own
    MULTIMODAL_HOME; yields the store folder, the data root and the calibration's path."""
    base = tmp_path_factory.mktemp("trust")
    root = write_recipes5k(base / "data", per_split=12)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MULTIMODAL_HOME", str(base / "home"))
        with EdgeStore(base / "store") as store:
            index_records(tiny_encoder, store, "dishes", read_records(root), progress=False)
        args = ["--collection", "dishes", "--store", str(base / "store"), "--no-progress"]
        assert cli(["calibrate", *args, "--k", "5"]) == 0
        written = home_path(model_stamp(tiny_encoder))
        yield base, root, written, patch


def test_calibrate_writes_every_direction_and_the_domains(calibrated, tiny_encoder, capsys):
    base, _, written, _ = calibrated
    calibration, path = find_calibration(tiny_encoder.info, model_stamp(tiny_encoder))
    assert path == written and calibration.fitted_on["split"] == "val"
    directions = {"text->image/hybrid", "text->text/dense", "image->text/dense"}
    assert directions | {"image->image/dense"} <= set(calibration.relevance)
    assert set(calibration.domain) == {"text", "image"}
    args = ["--collection", "dishes", "--store", str(base / "store"), "--no-progress"]
    code = cli(["calibrate", *args, "--split", "test"])
    assert code == 2 and "no point of split 'test'" in capsys.readouterr().err


def test_search_shows_probabilities_and_says_no_good_match(calibrated, capsys):
    base, _, _, _ = calibrated
    ask = ["search", "blue circle cake", "--collection", "dishes", "--store", str(base / "store")]
    assert cli([*ask, "--json", "--min-score", "0"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and all(0.0 <= row["probability"] <= 1.0 for row in rows)
    assert cli([*ask, "--json", "--min-score", "1"]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["no_good_match"] and line["min_score"] == 1.0
    assert line["near_miss"]["probability"] == max(row["probability"] for row in rows)
    assert cli([*ask, "--min-score", "1"]) == 0
    assert capsys.readouterr().out.startswith("no good match: no hit reached")
    with pytest.raises(SystemExit) as refused:
        cli([*ask, "--min-score", "1.5"])
    assert refused.value.code == 2
    assert "--min-score: must be a number from 0 to 1" in capsys.readouterr().err


def test_the_api_gives_probabilities_and_the_default_cut(calibrated, tiny_encoder):
    base, root, _, _ = calibrated
    with EdgeStore(base / "store") as store:
        searcher = Searcher(tiny_encoder, store, "dishes")
        direct = SearchService(searcher).search(SearchQuery(text="red square cake"))
        assert direct.min_score == DEFAULT_MIN_SCORE and direct.domain is not None
        server = launch(RecipeApp(searcher, map_folder=base / "maps"), block=False)
        try:
            with httpx.Client(base_url=server.local_url, timeout=60) as client:
                body = client.post("/api/search", json={"text": "red square cake"}).json()
                assert [h["probability"] for h in body["hits"]] == [
                    h.probability for h in direct.hits
                ]
                assert body["min_score"] == DEFAULT_MIN_SCORE and "in_domain" in body
                asked = {"text": "red square cake", "min_score": 0, "collapse": False}
                every = client.post("/api/search", json=asked).json()
                assert len(every["hits"]) == 12 and not every["no_good_match"]
                none = client.post("/api/search", json={"text": "red cake", "min_score": 1}).json()
                assert none["no_good_match"] and none["hits"] == []
                assert none["near_miss"]["probability"] < 1
                photo = (root / "images").rglob("*.jpg").__next__().read_bytes()
                answer = client.post(
                    "/api/search/photo",
                    files={"photo": ("p.jpg", photo, "image/jpeg")},
                    data={"query": json.dumps({"min_score": 1, "target": "text"})},
                ).json()
                assert answer["no_good_match"] and answer["near_miss"]["probability"] is not None
                bad = client.post("/api/search", json={"text": "cake", "min_score": 2})
                assert bad.status_code == 422 and "min_score" in bad.text
        finally:
            server.close()


def test_the_page_shows_probabilities_and_no_good_match(calibrated, tiny_encoder):
    base, _, _, _ = calibrated
    with EdgeStore(base / "store") as store:
        app = RecipeApp(Searcher(tiny_encoder, store, "dishes"), map_folder=base / "maps")
        gallery, hits, _, said = app.text_to_image(
            "red cake", None, 1.0, [], "", "", min_score=0, page=True
        )
        assert said == "" and all(caption.split(" · ")[0].endswith("%") for _, caption in gallery)
        assert [f"{h['probability']:.0%}" for h in hits] == [c.split(" · ")[0] for _, c in gallery]
        gallery, hits, _, said = app.text_to_image(
            "red cake", None, 1.0, [], "", "", min_score=1, page=True
        )
        assert gallery == [] and hits == [] and said.startswith("### No good match")
        assert len(app.text_to_image("red cake", None, 1.0, [], "", "")) == 3  # the endpoint's
        photo = next(iter(sorted((base / "data" / "images").rglob("*.jpg"))))
        found = app.image_to_text(str(photo), [], "", "", min_score=1, page=True)
        assert found[0] == [] and "No good match" in found[-1]


def test_the_min_score_control_in_chromium(calibrated, tiny_encoder):
    from browser import drive_min_score, find_chromium

    if find_chromium() is None:
        if os.environ.get("MULTIMODAL_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required here: apt-get install chromium chromium-driver")
        pytest.skip("no Chromium: apt-get install chromium chromium-driver")
    base, _, _, _ = calibrated
    with EdgeStore(base / "store") as store:
        app = RecipeApp(Searcher(tiny_encoder, store, "dishes"), map_folder=base / "maps")
        server = launch(app, block=False)
        try:
            seen = drive_min_score(server.local_url, "red square cake")
        finally:
            server.close()
    assert "No good match" in seen["verdict"] and "nearest miss" in seen["verdict"]
    assert seen["shown"] == []
    expected, _, _ = app.text_to_image("red square cake", None, 1.0, [], "", "", min_score=0)
    assert seen["captions"] == [caption for _, caption in expected]
    assert "No good match" not in seen["cleared"]
