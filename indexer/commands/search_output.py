"""What ``multimodal search`` prints: a table of hits (or "no good match" and the nearest
miss), or JSON lines for scripts."""

from __future__ import annotations

import json
import shutil

from indexer.service import Answer
from indexer.store import StoredPoint
from multimodal.calibration import DOMAIN_ALPHA


def print_json(answer: Answer) -> None:
    """One JSON line per result, then one for the dish types and suggestions if asked."""
    for rank, hit in enumerate(answer.hits, 1):
        print(json.dumps(hit_row(answer, hit, rank)))
    if answer.no_match:
        near = hit_row(answer, answer.near_miss, None)
        found = {"no_good_match": True, "min_score": answer.min_score, "near_miss": near}
        print(json.dumps({**found, "in_domain": answer.domain}))
    if answer.looks_like or answer.ingredients:
        found = {"looks_like": answer.looks_like, "suggested_ingredients": answer.ingredients}
        print(json.dumps(found))


def hit_row(answer: Answer, hit: StoredPoint, rank: int | None) -> dict:
    """A hit as one JSON object: rank, score, probability, id, payload, path, duplicates."""
    row = {"rank": rank, "score": hit.score, "probability": hit.probability, "id": hit.id}
    row.update(hit.payload)
    row["path"] = str(hit.image_path) if hit.image_path else None
    row["duplicates"] = [
        {"id": d.id, "score": d.score, "path": str(d.image_path) if d.image_path else None}
        for d in answer.duplicates.get(hit.id, [])
    ]
    return row


def format_answer(answer: Answer) -> str:
    """The hits as a table; "no good match" with the nearest miss when none passed."""
    if not answer.no_match:
        return format_hits(answer.hits, answer.duplicates)
    near = answer.near_miss
    why = f"no hit reached a match probability of {answer.min_score:g}"
    if answer.domain is not None and answer.domain < DOMAIN_ALPHA:
        why += " (the query looks unlike anything the model was calibrated on)"
    return f"no good match: {why}; the nearest miss:\n" + format_hits([near], answer.duplicates)


def format_suggestions(suggested: list[tuple[str, float]], ranking: str) -> str:
    """The suggested ingredients with their shares, in ``ranking`` order."""
    if not suggested:
        return "\nno ingredients to suggest: the nearest items list none"
    order = "most specific first" if ranking == "specific" else "most votes first"
    lines = [f"\nsuggested ingredients (share of neighbour votes, {order}):"]
    for name, share in suggested:
        lines.append(f"  {share:5.2f}  {'#' * round(share * 20):<20}  {name}")
    return "\n".join(lines)


def dish_name(label: str) -> str:
    return label.replace("_", " ")


def format_hits(hits, duplicates=None) -> str:
    if not hits:
        return "no results (check the filters)"
    width = shutil.get_terminal_size((120, 20)).columns
    lines = [
        f"{'rank':>4}  {'score':>6}  {'prob':>4}  {'title':<32}  {'dish':<16}  ingredients | path"
    ]
    for rank, hit in enumerate(hits, 1):
        p = hit.payload
        ingredients = ", ".join(p.get("base_ingredients") or p.get("ingredients") or [])
        title = _clip(p.get("title") or "-", 32)
        label = _clip(p.get("label") or "-", 16)
        chance = "-" if hit.probability is None else f"{hit.probability:.0%}"
        head = f"{rank:>4}  {hit.score:6.3f}  {chance:>4}  {title:<32}  {label:<16}  "
        rest = _clip(ingredients or "-", max(20, width - len(head) - 2))
        lines.append(head + rest)
        where = p.get("image") or "(text only)"
        more = len((duplicates or {}).get(hit.id, []))
        lines.append(" " * len(head) + where + (f"  (+{more} similar)" if more else ""))
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
