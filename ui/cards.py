"""What the page shows of a hit (a gallery caption, a recipe card, a row of the recipes table)
and how its filter controls become a :class:`~indexer.store.SearchFilter`."""

from __future__ import annotations

from indexer.service import Answer
from indexer.store import SearchFilter, StoredPoint
from multimodal.calibration import DOMAIN_ALPHA
from ui.photos import hit_json

TAG_SEPARATOR = ": "  # a label in the page's filter: "course: dessert"


def looks_like(shares: list[tuple[str, float]]) -> dict[str, float]:
    """The dish types a photo looks like, as the page shows them ("crab cakes": 0.18)."""
    shown: dict[str, float] = {}
    for label, share in shares:
        name = label.replace("_", " ")
        shown[name] = shown.get(name, 0.0) + share
    return shown


def filter_choices(dishes: list[str], tags: dict[str, list[str]]) -> list[str]:
    """The choices of the page's "Dish type or label" filter: the dish types, then each tag
    field's labels as ``field: label``."""
    return [*dishes, *(f"{f}{TAG_SEPARATOR}{name}" for f, names in tags.items() for name in names)]


def page_filter(dishes, with_text, without_text, tags: dict[str, list[str]]) -> SearchFilter:
    """The filter of the page's controls; a chosen ``field: label`` of the collection's tag
    fields (``tags``) filters on that field (labels of one field: any of them; several
    fields: all), any other choice is a dish type."""
    labels, fields = [], {}
    for chosen in dishes or []:
        field, _, name = str(chosen).partition(TAG_SEPARATOR)
        if name in tags.get(field, ()):
            fields.setdefault(field, []).append(name)
        else:
            labels.append(chosen)
    return SearchFilter(
        labels=labels,
        with_ingredients=_words(with_text),
        without_ingredients=_words(without_text),
        fields=fields,
    )


def _words(text: str | None) -> list[str]:
    return [w.strip() for w in (text or "").split(",") if w.strip()]


def gallery_and_hits(answer: Answer, root_url: str) -> tuple[list, list[dict]]:
    """The gallery (each photo's URL and caption, "+N similar" where photos that are the same
    picture were folded into it) and, in the same order, the hits as the browser keeps them:
    every hit, as the API and the command line list them (a photo whose file is gone shows as
    a broken picture with its caption, not as a silent gap)."""
    hits = answer.hits
    state = [hit_json(hit, root_url, answer.duplicates.get(hit.id, [])) for hit in hits]
    gallery = [
        (shown["photo"], caption(hit, len(shown["duplicates"])))
        for hit, shown in zip(hits, state, strict=True)
    ]
    return gallery, state


def verdict(answer, photos=None) -> str:
    """What the page says above the results: nothing when hits passed the cut; else "no good
    match" and the nearest miss, apart from the results (``photos``: the photo tab's similar
    photos, judged beside its recipes)."""
    answers = [a for a in (answer, photos) if a is not None]
    missed = [a for a in answers if a.no_match]
    if not missed:
        return ""
    near = missed[0].near_miss
    title = near.payload.get("title") or near.payload.get("image") or near.id
    lines = [
        f"### No good match\nNothing reached a match probability of "
        f"{missed[0].min_score:.0%}. The nearest miss: **{title}** ({near.probability:.0%})."
    ]
    if missed[0].domain is not None and missed[0].domain < DOMAIN_ALPHA:
        lines.append("The query looks unlike anything this model was calibrated on.")
    return "\n\n".join(lines)


def match(hit: StoredPoint) -> str:
    """A hit's match probability as a person reads it ("62%"), else its raw score."""
    return f"{hit.score:.3f}" if hit.probability is None else f"{hit.probability:.0%}"


def caption(hit: StoredPoint, similar: int = 0) -> str:
    names = hit.payload.get("base_ingredients") or hit.payload.get("ingredients") or []
    caption = f"{match(hit)} · {hit.payload.get('title') or '-'}"
    if similar:
        caption += f" · +{similar} similar"
    if names:
        more = ", …" if len(names) > 4 else ""
        caption += f" · {', '.join(names[:4])}{more}"
    return caption


def recipe_rows(hits: list[StoredPoint]) -> list[list]:
    rows = []
    for rank, hit in enumerate(hits, 1):
        p = hit.payload
        ingredients = ", ".join(p.get("ingredients") or p.get("base_ingredients") or [])
        rows.append(
            [rank, round(hit.score, 3), p.get("title") or "-", p.get("label") or "-", ingredients]
        )
    return rows


def recipe_markdown(hit: dict) -> str:
    p = hit["payload"]
    lines = [f"### {p.get('title') or 'Untitled'}", f"score **{hit['score']:.3f}**"]
    if hit.get("probability") is not None:
        lines[-1] += f" · match probability **{hit['probability']:.0%}**"
    if p.get("label"):
        lines[-1] += f" · dish type **{p['label'].replace('_', ' ')}**"
    tags = [
        f"{field} **{', '.join(map(str, p[field]))}**"
        for field in sorted(p)
        if isinstance(p.get(f"{field}_scores"), dict) and isinstance(p[field], list)
    ]
    if tags:  # the fields multimodal tag wrote (a list, and its scores beside it)
        lines.append(" · ".join(tags))
    ingredients = p.get("ingredients") or []
    if ingredients:
        lines.append("\n".join(f"- {i}" for i in ingredients))
    if p.get("image"):
        lines.append(f"`{p['image']}`")
    return "\n\n".join(lines)
