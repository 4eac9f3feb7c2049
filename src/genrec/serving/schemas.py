"""Request and response bodies of the HTTP API (pydantic 2); they are the OpenAPI schema too.

Limits are part of the schema, so a request outside them is a 422 before any model runs:
``k`` in 1..MAX_K (a JSON integer: ``true`` or ``"10"`` is refused), at most MAX_HISTORY history
items and MAX_EXCLUDE excluded items, ids of at most MAX_ID_LENGTH characters, unknown fields
rejected. Ids may be sent as JSON integers (MovieLens ids are numbers): ``50`` is read as ``"50"``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints,
                      field_validator, model_validator)

__all__ = ["MAX_K", "MAX_HISTORY", "MAX_EXCLUDE", "MAX_ID_LENGTH", "MAX_QUERY_LENGTH",
           "RecommendRequest", "ItemRef", "ScoredItem", "RecommendResponse", "SimilarResponse",
           "SearchResponse", "ItemDetails", "Health", "ErrorBody"]

MAX_K = 100
MAX_HISTORY = 500
MAX_EXCLUDE = 1000
MAX_ID_LENGTH = 200
MAX_QUERY_LENGTH = 2000  # /search cuts a longer query here and says so in its note


def _integer_as_text(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


IdText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
# a raw id: a string, or a JSON integer read as its decimal text (50 -> "50"); the schema says both
RawId = Annotated[IdText, BeforeValidator(_integer_as_text, json_schema_input_type=IdText | int)]


class RecommendRequest(BaseModel):
    """Exactly one of ``user_id`` (a known user) or ``history`` (raw item ids, oldest first).

    The schema says so too (``oneOf``), so generated clients and fuzzers know the rule.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "oneOf": [{"required": ["user_id"]}, {"required": ["history"]}],
        "examples": [{"history": ["item-1", "item-2"], "k": 10}, {"user_id": "42", "k": 5}]})

    # None only as the default (defaults are not validated), so the field is absent; an explicit
    # null is refused by _no_nulls. Not "RawId | None": a union reports one error per member.
    user_id: RawId = Field(None, description="raw user id from the training data")
    history: list[RawId] = Field(
        None, max_length=MAX_HISTORY, description="raw item ids, oldest first; [] = no history")
    k: int = Field(10, ge=1, le=MAX_K, strict=True, description="how many items to return")
    exclude: list[RawId] = Field([], max_length=MAX_EXCLUDE,
                                 description="raw item ids never to return")
    fallback: Literal["popular"] | None = Field(
        None, description="'popular': serve an unknown user the most popular items")

    @field_validator("user_id", "history", mode="before")
    @classmethod
    def _no_nulls(cls, value: object) -> object:
        if value is None:
            raise ValueError("leave the field out instead of sending null")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "RecommendRequest":
        if (self.user_id is None) == (self.history is None):
            raise ValueError("give exactly one of user_id or history (a list of item ids, "
                             "possibly empty)")
        return self


class ItemRef(BaseModel):
    item_id: str
    title: str
    image: str | None = Field(None, description="URL of a local image, when the item has one")


class ScoredItem(ItemRef):
    score: float


class RecommendResponse(BaseModel):
    items: list[ScoredItem]
    model: str = Field(description="the model that answered")
    fallback: Literal["popular"] | None = Field(
        None, description="set when the items are not personalised")
    reason: str | None = Field(None, description="why the fallback was used")
    latency_ms: float = Field(description="time spent answering, in milliseconds")


class SimilarResponse(BaseModel):
    item: ItemRef
    items: list[ScoredItem]
    source: str = Field(description="the item-item relation used")
    latency_ms: float


class SearchResponse(BaseModel):
    query: str
    items: list[ScoredItem]
    encoder: str = Field(description="the text encoder that answered")
    latency_ms: float
    note: str | None = Field(None, description="e.g. a query the tokenizer mostly cannot read")


class ItemDetails(BaseModel):
    item_id: str
    title: str
    popularity: int = Field(description="users who interacted with the item")
    image: str | None = None
    details: dict[str, str] = Field(default_factory=dict,
                                    description="text fields: categories, genres, ...")


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    dataset: str
    n_users: int
    n_items: int
    search: str = Field(description="the search encoder")
    search_vectors: str = Field(description="where the search index's item vectors came from")
    similar: str = Field(description="the item-item relation of /similar")
    load_seconds: float
    example_user_id: str | None = Field(None, description="a known user id (the first one)")
    example_title: str | None = Field(
        None, description="the most popular item's title (None when items have no titles)")


class ErrorBody(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="what is wrong; request validation errors list one entry per problem")
    unknown_item_ids: list[str] | None = None
