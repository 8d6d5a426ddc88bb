"""The console commands, called as ``main(argv)`` and once as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import draw_image

from multimodal import cli
from multimodal.commands import embed
from multimodal.commands import eval as eval_command
from multimodal.commands import train as train_command
from multimodal.commands.common import command


def _tiny_eval(data, out, *extra: str) -> int:
    argv = ["--model", "tiny-random", "--data", str(data), "--out", str(out)]
    return eval_command.main([*argv, "--no-progress", "--workers", "0", *extra])


def test_eval_prints_a_table_and_writes_json(recipes5k_folder, tmp_path, capsys):
    out = tmp_path / "results.json"
    code = _tiny_eval(recipes5k_folder, out, "--bags", "3", "--bag-size", "4")
    printed = capsys.readouterr().out
    assert code == 0
    assert "image_to_text" in printed and "text_to_image" in printed and "R@1" in printed
    results = json.loads(out.read_text())
    assert results["split"] == "val" and results["pairs"] == 6  # val is the default split
    for direction in ("image_to_text", "text_to_image"):
        metrics = results["metrics"][direction]
        assert 1 <= metrics["MedR"] <= 6 and 0 <= metrics["R@1"] <= 100
        assert "class@1" in metrics
        # a bag of 4 pairs: every item is within the top 10
        assert results["bags"][direction]["R@10"] == 100.0
        assert set(results["user"][direction]) == {"top1", "top5"}
    assert "what a user sees: 6 pairs" in printed and "baseline: true dish type" in printed
    ingredients = results["user"]["ingredients"]
    assert ingredients["photos"] == 6
    for suggester in ("model", "frequent", "true_dish"):
        assert 0 <= ingredients[suggester]["P@5"] <= 100
        assert 0 <= ingredients[suggester]["R@10"] <= 100


def test_eval_skips_a_corrupt_photo_and_says_so(recipes5k_folder, tmp_path, capsys):
    broken = next((recipes5k_folder / "images" / "circle").glob("*val*.jpg"))
    broken.write_bytes(broken.read_bytes()[:200])
    out = tmp_path / "r.json"
    code = _tiny_eval(recipes5k_folder, out)
    assert code == 0
    results = json.loads(out.read_text())
    assert results["pairs"] == 5
    assert results["rejects"] == [{"path": str(broken), "reason": results["rejects"][0]["reason"]}]
    assert "rejected" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "tiny-random", "--data", "/no/such/data"], "no data set at /no/such/data"),
        (["--model", "No-Such:tag", "--data", "."], "unknown open_clip architecture"),
        (["--model", "tiny-random", "--data", "DATA", "--split", "test"], "no split 'test'"),
        (["--model", "tiny-random", "--data", "DATA", "--bags", "2"], "--bag-size 6"),
    ],
)
def test_eval_errors_are_one_line_and_non_zero(recipes5k_folder, capsys, argv, message):
    argv = [str(recipes5k_folder) if a == "DATA" else a for a in argv]
    code = eval_command.main(argv + ["--no-progress", "--workers", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("multimodal eval: error:") and message in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_a_flag_of_fixed_values_fails_at_parse_time(capsys):
    argv = ["--model", "tiny-random", "--data", "DATA", "--out", "OUT"]
    with pytest.raises(SystemExit) as exit_info:
        train_command.main([*argv, "--mining-strategy", "typo"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'typo'" in capsys.readouterr().err


def test_embed_writes_aligned_shards_and_resumes(recipes5k_folder, tmp_path, capsys):
    broken = next((recipes5k_folder / "images" / "square").glob("*train*.jpg"))
    broken.write_text("not a photo")
    out = tmp_path / "emb"
    argv = [
        "--model",
        "tiny-random",
        "--data",
        str(recipes5k_folder),
        "--out",
        str(out),
        "--shard-size",
        "5",
        "--no-progress",
        "--workers",
        "0",
    ]
    assert embed.main(argv) == 0
    assert "embedded now 12" in capsys.readouterr().out

    images = np.concatenate([np.load(p) for p in sorted((out / "img_emb").glob("*.npy"))])
    texts = np.concatenate([np.load(p) for p in sorted((out / "text_emb").glob("*.npy"))])
    rows = [
        json.loads(line)
        for p in sorted((out / "metadata").glob("*.jsonl"))
        for line in p.read_text().splitlines()
    ]
    assert images.shape == texts.shape == (12, 32) and len(rows) == 12
    missing = [i for i, row in enumerate(rows) if not row["has_image"]]
    assert [rows[i]["image"] for i in missing] == [broken.relative_to(recipes5k_folder).as_posix()]
    assert np.all(images[missing] == 0) and np.allclose(np.linalg.norm(texts, axis=1), 1.0)
    rejects = [
        json.loads(line)
        for p in (out / "rejects").glob("*.jsonl")
        for line in p.read_text().splitlines()
    ]
    assert [r["path"] for r in rejects] == [str(broken)]

    # an interrupted run lost its last shard: the rerun embeds only that one
    (out / "metadata" / "metadata_0002.jsonl").unlink()
    assert embed.main(argv) == 0
    assert "embedded now 2, already there 10" in capsys.readouterr().out
    again = np.concatenate([np.load(p) for p in sorted((out / "img_emb").glob("*.npy"))])
    np.testing.assert_allclose(again, images, atol=1e-6)


@pytest.mark.slow
def test_embed_refuses_to_mix_models_in_one_folder(recipes5k_folder, tmp_path, capsys):
    out = tmp_path / "emb"
    base = ["--data", str(recipes5k_folder), "--out", str(out), "--no-progress", "--workers", "0"]
    assert embed.main(["--model", "tiny-random", *base]) == 0
    assert embed.main(["--model", "recipe-starter", *base]) == 2
    assert "another run (different model)" in capsys.readouterr().err


def test_parquet_metadata(recipes5k_folder, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "emb"
    assert (
        embed.main(
            [
                "--model",
                "tiny-random",
                "--data",
                str(recipes5k_folder),
                "--split",
                "val",
                "--out",
                str(out),
                "--metadata-format",
                "parquet",
                "--no-progress",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    table = pq.read_table(out / "metadata" / "metadata_0000.parquet")
    assert table.num_rows == 6 and "title" in table.column_names


def test_dispatcher(capsys):
    assert cli.main(["--help"]) == 0
    assert "eval" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2


@pytest.mark.slow
def test_console_script_runs_as_a_process(recipes5k_folder, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "multimodal",
            "eval",
            "--model",
            "tiny-random",
            "--data",
            str(recipes5k_folder),
            "--no-progress",
            "--out",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "text_to_image" in result.stdout and (tmp_path / "r.json").is_file()


def test_embed_lists_items_it_cannot_write_and_embeds_the_rest(tmp_path, capsys):
    # Before: a file name that is not UTF-8 stopped embed with "surrogates not allowed".
    data = tmp_path / "photos"
    draw_image(data / "good.png", "red", "square")
    try:
        odd = Path(os.fsdecode(os.fsencode(data) + b"/caf\xe9.png"))
        draw_image(odd, "green", "triangle")
    except OSError:  # a file system that takes only UTF-8 names
        pytest.skip("this file system refuses names that are not UTF-8")
    out = tmp_path / "emb"
    argv = [
        "--model",
        "tiny-random",
        "--data",
        str(data),
        "--out",
        str(out),
        "--workers",
        "0",
        "--no-progress",
    ]
    assert embed.main(argv) == 0
    assert "1 items in 1 shards" in capsys.readouterr().out
    metadata = [json.loads(line) for line in (out / "metadata" / "metadata_0000.jsonl").open()]
    assert [Path(row["image"]).name for row in metadata] == ["good.png"]
    (row,) = [json.loads(line) for line in (out / "rejects" / "unusable.jsonl").open()]
    assert row["path"].endswith("caf\\xe9.png") and "not valid UTF-8" in row["reason"]


def test_an_unreadable_file_is_one_line_naming_it(capsys):
    @command("probe")
    def run(argv=None) -> int:
        raise PermissionError(13, "Permission denied", "/data/manifest.csv")

    assert run([]) == 1
    err = capsys.readouterr().err
    assert err == "multimodal probe: error: /data/manifest.csv: Permission denied\n"
