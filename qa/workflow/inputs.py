"""What users type, checked before it is stored: one table of limits and the input records.

Free text goes into unbounded Text columns, so without a limit one dispute reason can be
megabytes that every page then loads and renders. The service builds one of these records
from an action's arguments before it writes; a value past its limit is refused with an
`InvalidInput` naming the field and the limit, never a pydantic traceback.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qa.errors import QAError

# Characters (or entries, for lists) per field; the one place a limit is set.
LIMITS: dict[str, int] = {
    "username": 64,
    "password": 1024,
    "display_name": 200,
    "team": 100,
    "agent_id": 100,
    "call_id": 128,
    "item_id": 100,
    "address": 128,
    "review_comment": 10_000,
    "item_comment": 5_000,
    "review_items": 500,
    "final_note": 10_000,
    "dispute_reason": 5_000,
    "resolution": 5_000,
    "coaching_notes": 20_000,
    "follow_up_notes": 20_000,
    "coaching_calls": 100,
    "coaching_items": 200,
    "case_title": 300,  # the column's length: cases.title is String(300)
    "case_notes": 20_000,
    "tag": 50,
    "case_tags": 30,
    "reason": 2_000,
    "search": 500,
}


class InvalidInput(QAError):
    """A value a user gave is refused (too long, too many entries); the message names it."""


def _describe(what: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]).replace("_", " ")
    name = f"{what} {field}".strip()
    ctx = err.get("ctx") or {}
    if err["type"] == "string_too_long":
        n = len(err["input"])
        return f"{name} is {n:,} characters long; at most {ctx['max_length']:,} are allowed"
    if err["type"] == "too_long":
        return (
            f"{name} has {ctx.get('actual_length', '?')} entries; "
            f"at most {ctx['max_length']:,} are allowed"
        )
    return f"{name}: {err['msg']}"


class Checked(BaseModel):
    """An input record whose refusal is an `InvalidInput`, so callers need catch QAError only.

    Pydantic passes exceptions other than ValueError through unchanged, so the one raised
    here reaches the caller as it is, also from a record nested in another.
    """

    model_config = ConfigDict(extra="forbid")
    what: ClassVar[str] = ""

    @model_validator(mode="wrap")
    @classmethod
    def _refuse_plainly(cls, data: Any, handler: Any) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise InvalidInput(_describe(cls.what, exc)) from None


def limited(limit: str, default: Any = ...) -> Any:
    """A field of at most LIMITS[limit] characters."""
    return Field(default=default, max_length=LIMITS[limit])


Tag = Annotated[str, Field(max_length=LIMITS["tag"])]
CallId = Annotated[str, Field(max_length=LIMITS["call_id"])]
ItemId = Annotated[str, Field(max_length=LIMITS["item_id"])]


class NewUserInput(Checked):
    what: ClassVar[str] = "user"
    username: str = limited("username")
    password: str = limited("password")
    display_name: str | None = limited("display_name", None)
    team: str | None = limited("team", None)
    agent_id: str | None = limited("agent_id", None)


class UsernameInput(Checked):
    what: ClassVar[str] = "user"
    username: str = limited("username")


class AssignInput(Checked):
    what: ClassVar[str] = "assignment"
    call_id: str = limited("call_id")
    reviewer: str = limited("username")


class ReviewItemText(Checked):
    what: ClassVar[str] = "review item"
    item_id: str = limited("item_id")
    comment: str = limited("item_comment", "")


class ReviewInput(Checked):
    what: ClassVar[str] = "review"
    call_id: str = limited("call_id")
    comment: str = limited("review_comment", "")
    items: list[ReviewItemText] = Field(default_factory=list, max_length=LIMITS["review_items"])


class FinalScoreInput(Checked):
    what: ClassVar[str] = "final score"
    call_id: str = limited("call_id")
    note: str = limited("final_note", "")
    items: list[ReviewItemText] = Field(default_factory=list, max_length=LIMITS["review_items"])


class ReasonInput(Checked):
    """Why a lead reopened a review or a reviewer swapped the speakers (audit log only)."""

    what: ClassVar[str] = "change"
    reason: str = limited("reason", "")


class DisputeInput(Checked):
    what: ClassVar[str] = "dispute"
    call_id: str = limited("call_id")
    item_id: str = limited("item_id")
    reason: str = limited("dispute_reason")


class ResolutionInput(Checked):
    what: ClassVar[str] = "dispute"
    resolution: str = limited("resolution")


class CoachingInput(Checked):
    what: ClassVar[str] = "coaching"
    agent_id: str = limited("agent_id")
    call_ids: list[CallId] = Field(default_factory=list, max_length=LIMITS["coaching_calls"])
    item_ids: list[ItemId] = Field(default_factory=list, max_length=LIMITS["coaching_items"])
    notes: str = limited("coaching_notes", "")


class FollowUpInput(Checked):
    what: ClassVar[str] = "coaching"
    follow_up_notes: str = limited("follow_up_notes")


class CaseInput(Checked):
    """The title is left to its column (String(300), refused by `models._check_lengths`
    as "cases.title ... at most 300 fit"), which says the same in the words of the table."""

    what: ClassVar[str] = "case"
    call_id: str = limited("call_id")
    notes: str = limited("case_notes", "")
    tags: list[Tag] = Field(default_factory=list, max_length=LIMITS["case_tags"])


class SearchInput(Checked):
    what: ClassVar[str] = "case search"
    text: str | None = limited("search", None)
    tag: str | None = limited("tag", None)
