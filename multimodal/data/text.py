"""Recipe texts for the text tower: the title, then as many ingredients as the context holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from multimodal.data.records import Record


def recipe_text(title: str, ingredients: Sequence[str]) -> str:
    """``"Apple Pie. Ingredients: apples, flour, sugar."``; a bare caption stays as it is."""
    title = title.strip()
    if not ingredients:
        return title
    listed = ", ".join(ingredients)
    return f"{title}. Ingredients: {listed}." if title else f"Ingredients: {listed}."


def token_counter(tokenizer) -> Callable[[str], int]:
    """Tokens ``text`` takes in ``tokenizer`` (an open_clip tokenizer), special tokens included."""
    hf = getattr(tokenizer, "tokenizer", None)
    if hf is not None:  # open_clip HFTokenizer
        return lambda text: len(hf(text, add_special_tokens=True)["input_ids"])
    if hasattr(tokenizer, "encode"):  # open_clip SimpleTokenizer: plus start and end tokens
        return lambda text: len(tokenizer.encode(text)) + 2
    raise TypeError(f"cannot count tokens with {type(tokenizer).__name__}")


class RecipeTextBuilder:
    """Builds the text of a record so that it fits the tokenizer's context.

    The title is never cut: ingredients are dropped from the end of the list until the text
    fits (a title that alone is longer than the context is cut by the tokenizer, as any text).
    """

    def __init__(self, count_tokens: Callable[[str], int], context_length: int):
        self.count_tokens = count_tokens
        self.context_length = context_length

    @classmethod
    def for_tokenizer(cls, tokenizer) -> RecipeTextBuilder:
        return cls(token_counter(tokenizer), int(tokenizer.context_length))

    def __call__(self, record: Record) -> str:
        return self.build(record.title, record.ingredients)

    def build(self, title: str, ingredients: Sequence[str]) -> str:
        full = recipe_text(title, ingredients)
        if self.count_tokens(full) <= self.context_length:
            return full
        # The longest prefix of the ingredient list that fits; token counts grow with it.
        low, high = 0, len(ingredients) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self.count_tokens(recipe_text(title, ingredients[:middle])) <= self.context_length:
                low = middle
            else:
                high = middle - 1
        return recipe_text(title, ingredients[:low])
