"""``POST /api/marks``: a Good / Not this mark on a result, kept with the collection for
``multimodal train --marks`` (:class:`indexer.marks.MarkBook`, through the search service)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field, StringConstraints

from indexer.marks import MAX_QUERY_CHARS
from ui.api import PREFIX, Service, Strict, refusals

Words = Annotated[str, StringConstraints(max_length=MAX_QUERY_CHARS)]


class MarkBody(Strict):
    text: Words | None = Field(None, description="the words searched")
    point: str | None = Field(None, description="or the stored point searched from")
    hit: str = Field(description="the id of the result marked")
    good: bool = Field(description="true: Good; false: Not this")


class MarkOut(BaseModel):
    when: str
    good: bool
    hit: str
    marks: int = Field(description="marks the collection holds, this one included")


router = APIRouter(prefix=PREFIX, tags=["marks"])


@router.post("/marks", response_model=MarkOut)
def mark(body: MarkBody, searches: Service) -> MarkOut:
    """Mark a result Good or Not this for the words (``text``) or the stored point
    (``point``) searched; the mark is appended to the collection's marks file."""
    asked = {"point": body.point} if body.point else {"text": body.text or ""}
    with refusals():
        kept = searches.marks.record(asked, body.hit, body.good)
    hit = kept["hit"]["id"]
    return MarkOut(when=kept["when"], good=kept["good"], hit=hit, marks=searches.marks.count())
