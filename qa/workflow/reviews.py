"""Reviews: each reviewer's scoring of a call, saved with optimistic locking."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import flag_modified

from qa.errors import AccessDenied, QAError, StaleEditError
from qa.schema import ItemOutcome
from qa.workflow import auth
from qa.workflow.access import CallAccess, checked_item, outcome_of
from qa.workflow.actions import Tx, action, role_of
from qa.workflow.inputs import ReasonInput, ReviewInput, ReviewItemText
from qa.workflow.models import Call, Review, ReviewItem, User
from qa.workflow.unit import NotFoundError
from qa.workflow.views import ReviewItemInput, ReviewItemView, ReviewStatus, ReviewView, UserRole


def review_view(review: Review) -> ReviewView:
    return ReviewView(
        id=review.id,
        call_id=review.call_id,
        reviewer=review.reviewer.username,
        reviewer_name=review.reviewer.display_name,
        reviewer_role=UserRole(review.reviewer.role),
        self_review=review.self_review,
        status=ReviewStatus(review.status),
        version=review.version,
        revision=review.revision,
        items=[
            ReviewItemView(
                item_id=i.item_id,
                outcome=ItemOutcome(i.outcome),
                points=i.points,
                comment=i.comment,
            )
            for i in review.items
        ],
        total=review.total,
        passed=review.passed,
        comment=review.comment,
        created_at=review.created_at,
        updated_at=review.updated_at,
        submitted_at=review.submitted_at,
    )


class Reviews(CallAccess):
    """Saving, submitting, reopening and reading reviews."""

    @action(auth.REVIEW_WRITERS, "review calls", write=True)
    def save_review(
        self,
        tx: Tx,
        call_id: str,
        items: Sequence[ReviewItemInput],
        *,
        submit: bool = False,
        expected_version: int | None = None,
        comment: str = "",
    ) -> ReviewView:
        """Save (and optionally submit) the actor's review of a call.

        `items` is the whole review (items left out are removed). Pass the `version` of the
        review you loaded as `expected_version`, None for a first save: if someone saved in
        between, StaleEditError is raised and nothing is written. A submitted review is
        frozen until a lead reopens it (`reopen_review`), which starts a new revision.
        An agent's review of their own call is their self-review.
        """
        ReviewInput(
            call_id=call_id,
            comment=comment,
            items=[ReviewItemText(item_id=i.item_id, comment=i.comment) for i in items],
        )
        s, user = tx.s, tx.user
        call = self._call(s, user, call_id)
        self_review = role_of(user) is UserRole.AGENT
        call_items = {i.item_id: i for i in call.items}
        rows: dict[str, tuple[ItemOutcome, float, str]] = {}
        for entry in items:
            if entry.item_id in rows:
                raise QAError(f"item {entry.item_id!r} appears twice in the review")
            outcome, points = checked_item(call_id, call_items.get(entry.item_id), entry)
            rows[entry.item_id] = (outcome, points, entry.comment)
        if submit:
            missing = [i for i in call_items if i not in rows]
            if missing:
                raise QAError(f"cannot submit: items without an outcome: {', '.join(missing)}")
        review = s.scalar(
            select(Review)
            .options(selectinload(Review.items))
            .where(Review.call_id == call_id, Review.reviewer_id == user.id)
        )
        now = self.now()
        if review is None:
            if expected_version not in (None, 0):
                raise StaleEditError(
                    f"review of {call_id!r} by {user.username} no longer exists; reload"
                )
            review = Review(
                call_id=call_id,
                reviewer_id=user.id,
                self_review=self_review,
                status=ReviewStatus.DRAFT.value,
                revision=1,
                created_at=now,
                updated_at=now,
                comment="",
                total=0.0,
                passed=False,
            )
            review.reviewer = user
            s.add(review)
            s.flush()
            self._audit(s, user.username, "review", review.id, "create", "call_id", None, call_id)
        else:
            if review.status == ReviewStatus.SUBMITTED.value:
                raise AccessDenied(
                    f"review of {call_id!r} by {user.username} is submitted; "
                    "a lead must reopen it before it can change"
                )
            if expected_version != review.version:
                raise StaleEditError(
                    f"review of {call_id!r} by {user.username} changed since it was loaded "
                    f"(version {review.version}, yours {expected_version}); reload and retry"
                )
        old = {i.item_id: i for i in review.items}
        for item_id, row in list(old.items()):
            if item_id not in rows:
                review.items.remove(row)
                self._audit(
                    s,
                    user.username,
                    "review",
                    review.id,
                    "update",
                    f"items.{item_id}.outcome",
                    row.outcome,
                    None,
                )
        for item_id, (outcome, points, note) in rows.items():
            row = old.get(item_id)
            if row is None:
                row = ReviewItem(
                    item_id=item_id, outcome=outcome.value, points=points, comment=note
                )
                review.items.append(row)
                self._audit(
                    s,
                    user.username,
                    "review",
                    review.id,
                    "update",
                    f"items.{item_id}.outcome",
                    None,
                    outcome.value,
                )
                continue
            for name, value in (("outcome", outcome.value), ("points", points), ("comment", note)):
                if getattr(row, name) != value:
                    self._audit(
                        s,
                        user.username,
                        "review",
                        review.id,
                        "update",
                        f"items.{item_id}.{name}",
                        getattr(row, name),
                        value,
                    )
                    setattr(row, name, value)
        # a draft may leave items out: they are left out of its total too
        result = outcome_of(call, ((call_items[i], o, p) for i, (o, p, _) in rows.items()))
        values: dict[str, Any] = {
            "total": result.total,
            "passed": result.passed,
            "comment": comment,
        }
        if submit:
            values["status"] = ReviewStatus.SUBMITTED.value
        self._changes(
            s, user.username, "review", review.id, review, values, "submit" if submit else "update"
        )
        if submit:
            review.submitted_at = now
        review.updated_at = now
        # every save bumps the version, also one that changed only items (same clock tick)
        flag_modified(review, "updated_at")
        try:
            s.flush()
        except IntegrityError as exc:
            raise StaleEditError(
                f"review of {call_id!r} by {user.username} was created meanwhile; reload"
            ) from exc
        s.refresh(review, ["items"])
        return review_view(review)

    @action(auth.LEADS, "reopen reviews", write=True)
    def reopen_review(self, tx: Tx, review_id: int, reason: str = "") -> ReviewView:
        """A lead sends a submitted review back to draft as a new revision (audit-logged)."""
        ReasonInput(reason=reason)
        s, lead = tx.s, tx.user
        review = s.get(Review, review_id)
        if review is None:
            raise NotFoundError(f"review {review_id} not found")
        if review.status != ReviewStatus.SUBMITTED.value:
            raise QAError(f"review {review_id} is not submitted")
        self._changes(
            s,
            lead.username,
            "review",
            review_id,
            review,
            {"status": ReviewStatus.DRAFT.value, "revision": review.revision + 1},
            "reopen",
        )
        if reason:
            self._audit(s, lead.username, "review", review_id, "reopen", "reason", None, reason)
        review.submitted_at = None
        review.updated_at = self.now()
        s.flush()
        return review_view(review)

    def _visible_reviews(self, s: Session, user: User, call: Call) -> list[Review]:
        reviews = list(
            s.scalars(
                select(Review)
                .options(selectinload(Review.items), selectinload(Review.reviewer))
                .where(Review.call_id == call.call_id)
                .order_by(Review.id)
            )
        )
        role = role_of(user)
        if role in auth.SEE_ALL_REVIEWS:
            return reviews
        if role is UserRole.AGENT:
            # graders' forms are calibration; what the agent gets is the lead's published
            # decision (the call's final outcomes, comments and note), not each raw form
            return [r for r in reviews if r.reviewer_id == user.id]
        if role is UserRole.INSPECTOR:
            own = [r for r in reviews if r.reviewer_id == user.id]
            if own and own[0].status == ReviewStatus.SUBMITTED.value:
                return [
                    r
                    for r in reviews
                    if r.reviewer_id == user.id or r.status == ReviewStatus.SUBMITTED.value
                ]
            return own  # blind: others' scores only after submitting one's own
        raise AccessDenied(f"{user.username} ({user.role}) may not read reviews")

    @action(auth.REVIEW_READERS, "read reviews")
    def reviews_for_call(self, tx: Tx, call_id: str) -> list[ReviewView]:
        """Reviews the actor may see now.

        Leads and managers: all. Inspectors: their own, and others' submitted reviews only
        once their own is submitted (blind calibration). Agents, on their own calls only:
        their own self-review; the published review is the call's final decision.
        """
        call = self._call(tx.s, tx.user, call_id)
        return [review_view(r) for r in self._visible_reviews(tx.s, tx.user, call)]
