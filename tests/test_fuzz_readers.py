"""Property-based tests: the readers and the query parser on whatever a careless user writes.

Random manifest encodings, byte-order marks, column names, cells and file names (non-UTF-8
bytes included) go through the readers and the indexer's check stage; random queries and
weights go through the query parser. What may come out is the project's own answer: records
(each with its reason when it cannot be used), or a ValueError that names the file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from indexer.search import parse_query
from multimodal.data import read_records
from multimodal.data.loading import check_records
from multimodal.data.records import printable

# Hundreds of generated files per property: CI runs them; the quick loop leaves them out.
pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
UNICODE_ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-32")  # what the readers take
OTHER_ENCODINGS = ("latin-1", "cp1252", "utf-16-le")  # refused, unless the bytes are UTF-8
KNOWN_COLUMNS = ["image", "caption", "Image", " caption ", "title", "text", "path", "file", "label"]

# No NUL (refused as a sign of UTF-16 without a mark) and no leading U+FEFF (read as a mark).
cells = st.text(
    st.characters(blacklist_characters="\0\ufeff", blacklist_categories=("Cs",)), max_size=20
)
column_names = st.one_of(st.sampled_from(KNOWN_COLUMNS + ["", " ", "\ufeffimage"]), cells)
# Any text, lone surrogates (Cs: what a \udXXX escape in JSON gives) and controls included.
any_text = st.text(st.characters(categories=["Cs", "Cc", "Ll", "Lu", "Lo", "Nd", "Zs", "So"]))
image_cells = st.one_of(
    st.sampled_from(["photo.png", "a\x00.png", "caf\udce9.png", "\ud800.png", "../up.png", "."]),
    any_text.map(lambda text: text[:12]),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()  # NaN and infinity too: json.dumps writes them, json.loads reads them
    | st.sampled_from([math.nan, math.inf, -math.inf, 2**64, -(2**63) - 1])
    | image_cells,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=12,
)


def _encode(text: str, encoding: str) -> bytes:
    if encoding in OTHER_ENCODINGS and encoding != "utf-16-le":
        return text.encode(encoding, "replace")
    return text.encode(encoding, "surrogatepass")  # a surrogate makes the bytes invalid


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO(newline="")
    csv.writer(out).writerows([header, *rows])
    return out.getvalue()


def _read(path: Path):
    """Records, or None after a ValueError that names the file: nothing else may escape."""
    try:
        records = read_records(path)
    except ValueError as err:
        assert path.name in str(err) or printable(path.name) in str(err), str(err)
        return None
    _assert_storable_or_rejected(records)
    return records


def _assert_storable_or_rejected(records) -> None:
    """The indexer's check stage sorts every record: a usable one is strict UTF-8 JSON, a
    reject has a printable path and a reason."""
    usable, rejects = check_records(records)
    assert len(usable) + len(rejects) == len(records)
    for reject in rejects:
        json.dumps(reject.as_dict(), ensure_ascii=False).encode("utf-8")
        assert reject.reason
    for record in usable:
        str(record.image).encode("utf-8")
        json.dumps(record.metadata(), ensure_ascii=False, allow_nan=False).encode("utf-8")


@FUZZ
@given(
    header=st.lists(column_names, min_size=1, max_size=5),
    rows=st.lists(st.lists(cells, max_size=6), max_size=4),
    encoding=st.sampled_from(UNICODE_ENCODINGS + OTHER_ENCODINGS),
)
def test_any_csv_gives_records_or_an_error_naming_it(header, rows, encoding):
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "ménu items.csv"
        manifest.write_bytes(_encode(_csv_text(header, rows), encoding))
        _read(manifest)


@FUZZ
@given(
    rows=st.lists(
        st.builds(
            lambda known, other: {**other, **known},
            st.fixed_dictionaries({"image": image_cells, "caption": json_values}),
            st.dictionaries(column_names | st.text(max_size=8), json_values, max_size=4),
        ),
        min_size=1,
        max_size=4,
    ),
    ascii_only=st.booleans(),
    encoding=st.sampled_from((*UNICODE_ENCODINGS, "latin-1")),
)
def test_any_jsonl_gives_records_or_an_error_naming_it(rows, ascii_only, encoding):
    text = "".join(json.dumps(row, ensure_ascii=ascii_only) + "\n" for row in rows)
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "items.jsonl"
        manifest.write_bytes(_encode(text, encoding))
        _read(manifest)


@pytest.mark.parametrize("line", ["not json", "[1, 2]", "NaN", "[" * 5000, "1" * 5000, "{"])
def test_a_bad_jsonl_line_is_one_error_naming_the_file_and_the_line(tmp_path, line):
    manifest = tmp_path / "items.jsonl"
    manifest.write_text('{"image": "a.png", "caption": "soup"}\n\n' + line + "\n")
    with pytest.raises(ValueError, match=r"items\.jsonl line 3 is not (JSON|a JSON object)"):
        read_records(manifest)


@FUZZ
@given(
    extra=st.lists(column_names, max_size=3),
    rows=st.lists(st.tuples(cells, cells), min_size=1, max_size=4),
    encoding=st.sampled_from(UNICODE_ENCODINGS),
    kind=st.sampled_from(["csv", "jsonl"]),
)
def test_a_unicode_manifest_is_read_exactly_in_any_encoding(extra, rows, encoding, kind):
    """``image`` and ``caption`` first, any other columns after: every row comes back as
    written, whatever the encoding and byte-order mark."""
    extra = [name for name in extra if name not in ("image", "caption")]  # twice is an error
    header = ["image", "caption", *extra]
    full = [[image, caption, *["x"] * len(extra)] for image, caption in rows]
    if kind == "csv":
        text = _csv_text(header, full)
    else:
        text = "".join(json.dumps(dict(zip(header, row, strict=True))) + "\n" for row in full)
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / f"m.{kind}"
        manifest.write_bytes(text.encode(encoding))
        records = _read(manifest)
    assert records is not None
    assert [r.title for r in records] == [caption.strip() for _, caption in rows]
    assert [r.image is None for r in records] == [not image.strip() for image, _ in rows]


file_names = st.one_of(
    st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), max_size=30)
    .map(os.fsencode)
    .filter(lambda name: len(name) < 200),
    st.binary(min_size=1, max_size=30).filter(lambda name: b"/" not in name and b"\0" not in name),
)
captions = st.one_of(
    st.none(),
    st.tuples(cells, st.sampled_from(UNICODE_ENCODINGS + OTHER_ENCODINGS)),
    st.binary(max_size=40),
)


@FUZZ
@given(images=st.dictionaries(file_names, captions, min_size=1, max_size=5))
def test_any_image_folder_gives_one_record_per_image_and_a_reason_for_each_bad_one(images):
    with tempfile.TemporaryDirectory() as folder:
        root = os.fsencode(folder) + b"/photos"
        os.mkdir(root)
        made = {}
        for name, caption in images.items():
            try:
                with open(root + b"/" + name + b".png", "wb") as handle:
                    handle.write(b"not decoded by the reader")
                if caption is not None:
                    data = caption if isinstance(caption, bytes) else _encode(*caption)
                    with open(root + b"/" + name + b".txt", "wb") as handle:
                        handle.write(data)
            except OSError:  # a file system that refuses the name
                continue
            if not (name + b".png").startswith(b"."):  # hidden files are rejects
                made[name] = caption
        assume(made)
        records = _read(Path(os.fsdecode(root)))
    assert records is not None
    hidden = [r for r in records if r.image.name.startswith(".")]
    assert all("hidden" in r.error for r in hidden)
    by_name = {os.fsencode(r.image.name)[: -len(b".png")]: r for r in records if r not in hidden}
    assert set(by_name) == set(made)
    for name, caption in made.items():
        _check_folder_record(by_name[name], name, caption)


def _check_folder_record(record, name: bytes, caption) -> None:
    problem = record.problem()
    assert isinstance(record.title, str) and (problem is None or isinstance(problem, str))
    if not _decodes(name):
        assert problem is not None  # the caption's reason, or the name's
        return
    if caption is None:
        assert (record.title, problem) == ("", None)
        return
    if isinstance(caption, tuple) and caption[1] in UNICODE_ENCODINGS:
        assert (record.title, problem) == (caption[0].strip(), None)
        return
    written = caption if isinstance(caption, bytes) else _encode(*caption)
    if problem is not None:
        assert "save it as UTF-8" in problem and ".txt" in problem
    elif not written.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
        assert record.title == written.decode("utf-8-sig").strip()  # UTF-8 bytes: read as such


def _decodes(name: bytes) -> bool:
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


weights = st.one_of(
    st.integers(min_value=0, max_value=10**400).map(str),
    st.floats().map(repr),
    st.sampled_from(["nan", "inf", "-1", "1e999", ".5", "0", "0.0", "00001", "9" * 400]),
)
words = st.one_of(
    st.text(max_size=15),
    st.sampled_from(
        ["tart", "id:", "id:123", "photo.jpg", "~no-such-user/x.png", '"', "'", "+", "-"]
    ),
)
signs = st.sampled_from([" + ", " - ", "+", "-", " ", " +  - ", ""])


@st.composite
def queries(draw):
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        term = draw(words)
        if draw(st.booleans()):
            term = f"{draw(weights)}:{term}"
        if draw(st.booleans()):
            quote = draw(st.sampled_from(['"', "'"]))
            term = quote + term + quote
        parts.append(draw(signs) + term)
    return "".join(parts)


@FUZZ
@given(query=st.one_of(queries(), st.text(), st.text(max_size=40).map(lambda s: s * 400)))
def test_the_query_parser_gives_finite_weights_or_a_value_error(query):
    try:
        terms = parse_query(query)
    except ValueError:
        return
    assert terms and any(term.weight > 0 for term in terms)
    assert all(math.isfinite(term.weight) for term in terms)
    assert all(term.kind in ("text", "image", "point") for term in terms)


@pytest.mark.parametrize("weight", ["9" * 400, "1" + "0" * 40])
def test_a_weight_too_large_to_add_up_is_a_value_error(weight):
    # Before: "9"*400 parsed to an infinite weight, and 1e40 overflows the float32 query vector.
    with pytest.raises(ValueError, match="weight"):
        parse_query(f'"{weight}:strawberry tart" + cream')
    assert parse_query('"2.5:strawberry tart" + cream')[0].weight == 2.5


def test_a_path_under_an_unknown_users_home_is_a_value_error():
    # Before: RuntimeError("Could not determine home directory.") escaped the parser.
    with pytest.raises(ValueError, match="no image file"):
        parse_query("~no-such-user-here/photo.jpg + tart", allow_paths=True)
