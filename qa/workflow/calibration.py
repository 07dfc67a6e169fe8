"""Calibration: reviewers side by side on one call, and agreement across many."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from qa.errors import AccessDenied
from qa.schema import ItemOutcome
from qa.workflow import auth
from qa.workflow.actions import Tx, action, role_of
from qa.workflow.models import Review
from qa.workflow.reviews import Reviews
from qa.workflow.stats import agreement_rate, majority, nominal_alpha
from qa.workflow.views import (
    AgreementStats,
    CalibrationItem,
    CalibrationView,
    CallFilter,
    ItemAgreement,
    ReviewerAgreement,
    ReviewStatus,
    UserRole,
)


class Calibration(Reviews):
    """Per-call calibration and reviewer agreement statistics."""

    @action(auth.CALIBRATORS, "see calibration")
    def calibration(self, tx: Tx, call_id: str) -> CalibrationView:
        """Per item, every submitted review side by side with the automatic outcome.

        Agreement and spread are over inspectors and leads; the agent's self-review is shown
        (`self_reviewer`) but not counted. Inspectors see it only after submitting their own.
        """
        s, user = tx.s, tx.user
        call = self._call(s, user, call_id)
        if role_of(user) is UserRole.INSPECTOR:
            own = s.scalar(
                select(Review.status).where(
                    Review.call_id == call_id, Review.reviewer_id == user.id
                )
            )
            if own != ReviewStatus.SUBMITTED.value:
                raise AccessDenied(
                    f"{user.username}: submit your own review of {call_id!r} "
                    "before seeing the others'"
                )
        reviews = [
            r
            for r in self._visible_reviews(s, user, call)
            if r.status == ReviewStatus.SUBMITTED.value
        ]
        counted = [r for r in reviews if not r.self_review]
        self_rev = next((r for r in reviews if r.self_review), None)
        by_reviewer = {r.reviewer.username: {i.item_id: i for i in r.items} for r in reviews}
        items = []
        for ci in call.items:
            outcomes = {
                name: ItemOutcome(rows[ci.item_id].outcome)
                for name, rows in by_reviewer.items()
                if ci.item_id in rows
            }
            points = {
                name: rows[ci.item_id].points
                for name, rows in by_reviewer.items()
                if ci.item_id in rows
            }
            comments = {
                name: rows[ci.item_id].comment
                for name, rows in by_reviewer.items()
                if ci.item_id in rows and rows[ci.item_id].comment
            }
            names = [r.reviewer.username for r in counted if r.reviewer.username in outcomes]
            top, share = majority(outcomes[n] for n in names)
            tie = top is None and share is not None
            counted_points = [points[n] for n in names]
            auto = ItemOutcome(ci.auto_outcome)
            items.append(
                CalibrationItem(
                    item_id=ci.item_id,
                    name=ci.name,
                    critical=ci.critical,
                    points_possible=ci.points_possible,
                    auto_outcome=auto,
                    final_outcome=ItemOutcome(ci.final_outcome) if ci.final_outcome else None,
                    outcomes=outcomes,
                    points=points,
                    majority=top,
                    tie=tie,
                    agreement=share,
                    all_agree=share == 1.0 if share is not None else False,
                    auto_agreement=agreement_rate((outcomes[n], auto) for n in names),
                    points_spread=(max(counted_points) - min(counted_points))
                    if counted_points
                    else 0.0,
                    comments=comments,
                    final_comment=ci.final_comment,
                )
            )
        totals = {r.reviewer.username: r.total for r in reviews}
        counted_totals = [r.total for r in counted]
        shares = [i.agreement for i in items if i.agreement is not None]
        return CalibrationView(
            call_id=call_id,
            reviewers=[r.reviewer.username for r in counted],
            self_reviewer=self_rev.reviewer.username if self_rev else None,
            totals=totals,
            auto_total=call.auto_total,
            final_total=call.final_total,
            score_spread=(max(counted_totals) - min(counted_totals)) if counted_totals else 0.0,
            items=items,
            agreement=sum(shares) / len(shares) if shares else None,
            comments={r.reviewer.username: r.comment for r in reviews if r.comment},
        )

    @action(auth.STATS, "see agreement statistics")
    def agreement_stats(self, tx: Tx, filters: CallFilter | None = None) -> AgreementStats:
        """Krippendorff's alpha per item, overall and per reviewer over submitted reviews.

        Self-reviews are left out: they measure the agent's view, not grader alignment.
        """
        s = tx.s
        calls = {c.call_id: c for c in self._query_calls(s, tx.user, filters)}
        reviews = [
            r
            for r in s.scalars(
                select(Review)
                .options(selectinload(Review.items), selectinload(Review.reviewer))
                .where(Review.status == ReviewStatus.SUBMITTED.value, Review.self_review.is_(False))
            )
            if r.call_id in calls
        ]
        auto: dict[tuple[str, str], ItemOutcome] = {}
        final: dict[tuple[str, str], ItemOutcome] = {}
        # an item is its card's: the same id on an English and a Chinese card is two items
        names: dict[tuple[str, str], str] = {}
        for c in calls.values():
            for ci in c.items:
                auto[(c.call_id, ci.item_id)] = ItemOutcome(ci.auto_outcome)
                final[(c.call_id, ci.item_id)] = ItemOutcome(ci.final_outcome or ci.auto_outcome)
                names.setdefault((c.scorecard_id, ci.item_id), ci.name)
        ratings: dict[str, dict[tuple[str, str], ItemOutcome]] = defaultdict(dict)
        for r in reviews:
            for i in r.items:
                ratings[r.reviewer.username][(r.call_id, i.item_id)] = ItemOutcome(i.outcome)
        card_items = sorted(
            {(calls[c].scorecard_id, item) for rated in ratings.values() for c, item in rated}
        )
        per_item = []
        for card, item_id in card_items:
            sub = {
                name: {
                    c: o
                    for (c, item), o in rated.items()
                    if item == item_id and calls[c].scorecard_id == card
                }
                for name, rated in ratings.items()
            }
            pairs = [
                (o, auto[(c, item_id)])
                for rated in sub.values()
                for c, o in rated.items()
                if (c, item_id) in auto
            ]
            per_item.append(
                ItemAgreement(
                    scorecard_id=card,
                    item_id=item_id,
                    name=names.get((card, item_id), item_id),
                    alpha=nominal_alpha(sub),
                    auto_human_agreement=agreement_rate(pairs),
                    ratings=sum(len(v) for v in sub.values()),
                )
            )
        per_reviewer = []
        for name, rated in sorted(ratings.items()):
            others: dict[tuple[str, str], ItemOutcome] = {}
            for unit in rated:
                votes = [o[unit] for n, o in ratings.items() if n != name and unit in o]
                top, _ = majority(votes)
                if top is not None:
                    others[unit] = top
            vs_final = {u: final[u] for u in rated if u in final}
            per_reviewer.append(
                ReviewerAgreement(
                    reviewer=name,
                    reviews=sum(1 for r in reviews if r.reviewer.username == name),
                    alpha_vs_others=nominal_alpha({name: rated, "others": others}),
                    agreement_vs_others=agreement_rate((rated[u], o) for u, o in others.items()),
                    alpha_vs_final=nominal_alpha({name: rated, "final": vs_final}),
                    agreement_vs_final=agreement_rate((rated[u], o) for u, o in vs_final.items()),
                    agreement_vs_auto=agreement_rate(
                        (o, auto[u]) for u, o in rated.items() if u in auto
                    ),
                )
            )
        all_pairs = [
            (o, auto[u]) for rated in ratings.values() for u, o in rated.items() if u in auto
        ]
        return AgreementStats(
            calls=len({r.call_id for r in reviews}),
            reviews=len(reviews),
            alpha=nominal_alpha(ratings),
            auto_human_agreement=agreement_rate(all_pairs),
            items=per_item,
            reviewers=per_reviewer,
        )
