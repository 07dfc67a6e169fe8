"""Call drivers in the workflow: what a build found, what leads decided, and per-driver trends.

Leads rename, merge and pin drivers (each change audited); leads and managers read them
with their calls' pass rate, customer sentiment and repeat callers; agents and inspectors
are refused. The command line saves a build and the pipeline records each new call's
driver (`save_driver_build`, `record_call_drivers`): those are not a person's actions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from qa.drivers import (
    EXAMPLES,
    MIN_DRIVER_CALLS,
    REPEAT_DAYS,
    DriverBuild,
    Opening,
    PinnedCentroid,
    class_keywords,
    driver_name,
    repeated_calls,
)
from qa.errors import QAError
from qa.workflow import auth
from qa.workflow.access import week_of
from qa.workflow.actions import Tx, action
from qa.workflow.driver_models import CallDriver, Driver
from qa.workflow.models import Call
from qa.workflow.unit import SYSTEM, NotFoundError, UnitOfWork
from qa.workflow.views import View

OTHER = "other"
NAME_MAX = 120
KEYWORD_TEXTS = 300  # openings per driver read to recompute keywords after a merge


class DriverExample(View):
    call_id: str
    opening: str = ""
    started_at: datetime | None = None


class DriverView(View):
    """A driver as the Drivers page shows it; rates are None where no call says."""

    id: int
    name: str
    keywords: list[str]
    examples: list[DriverExample]
    calls: int
    pinned: bool
    active: bool
    merged_into: int | None = None
    build: int = 0
    pass_rate: float | None = None
    customer_sentiment: float | None = None
    repeat_rate: float | None = None  # of calls with a customer id: called again in N days
    with_customer: int = 0


class DriverWeek(View):
    """One driver in one week (driver_id None: calls no driver took, "other")."""

    week: date | None
    driver_id: int | None
    driver: str
    calls: int
    pass_rate: float | None = None
    customer_sentiment: float | None = None
    repeat_rate: float | None = None
    with_customer: int = 0


class CallDriverRow(View):
    """What the pipeline records for one call: its opening and the driver it got."""

    opening: Opening
    driver_id: int | None
    similarity: float | None = None
    how: str = "assign"


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


class _Stats:
    """Pass rate, sentiment and repeat callers over a set of call-driver rows."""

    def __init__(self) -> None:
        self.calls = 0
        self.passed: list[float] = []
        self.sentiment: list[float] = []
        self.repeated: list[float] = []

    def add(self, passed: bool | None, sentiment: float | None, repeat: bool | None) -> None:
        self.calls += 1
        if passed is not None:
            self.passed.append(float(passed))
        if sentiment is not None:
            self.sentiment.append(sentiment)
        if repeat is not None:
            self.repeated.append(float(repeat))

    def values(self) -> dict[str, float | int | None]:
        return {
            "calls": self.calls,
            "pass_rate": _mean(self.passed),
            "customer_sentiment": _mean(self.sentiment),
            "repeat_rate": _mean(self.repeated),
            "with_customer": len(self.repeated),
        }


class Drivers(UnitOfWork):
    """Driver builds, the pipeline's per-call labels, and leads' edits."""

    # ---- the command line and the pipeline

    def save_driver_build(
        self,
        build: DriverBuild,
        openings: Sequence[Opening],
        pinned_hits: dict[str, tuple[int, float]],
    ) -> list[int]:
        """Replace the unpinned drivers with this build's groups and relabel its calls.

        A call close enough to a pinned driver (`pinned_hits`) keeps that label; a group
        left with fewer than MIN_DRIVER_CALLS calls goes to "other"; a name a lead gave a
        replaced driver passes to the group holding most of its calls. Returns the new ids.
        """
        by_id = {o.call_id: o for o in openings}
        with self._tx(write=True) as s:
            number = (
                s.scalar(select(Driver.build).order_by(Driver.build.desc()).limit(1)) or 0
            ) + 1
            old = list(s.scalars(select(Driver).where(Driver.active, ~Driver.pinned)))
            names = self._carried_names(s, old, build, pinned_hits)
            for d in old:
                d.active = False
            s.flush()
            new_ids: list[int] = []
            label: dict[str, tuple[int | None, float | None, str]] = {}
            for call_id, (driver_id, sim) in pinned_hits.items():
                label[call_id] = (driver_id, sim, "build")
            for g in build.groups:
                members = [c for c in g.call_ids if c not in pinned_hits]
                if len(members) < MIN_DRIVER_CALLS:
                    continue
                d = Driver(
                    name=names.get(g.key, g.name)[:NAME_MAX],
                    keywords=g.keywords,
                    examples=[c for c in g.examples if c in members][:EXAMPLES] or members[:1],
                    centroid=g.centroid,
                    center=g.center,
                    encoder=build.encoder,
                    build=number,
                    created_at=self.now(),
                )
                s.add(d)
                s.flush()
                new_ids.append(d.id)
                for c in members:
                    label[c] = (d.id, build.similarity.get(c), "build")
            for call_id in by_id:
                label.setdefault(call_id, (None, None, "build"))
            rows = [
                CallDriverRow(opening=by_id[c], driver_id=d, similarity=sim, how=how)
                for c, (d, sim, how) in label.items()
                if c in by_id
            ]
            self._record(s, rows)
            self._audit(
                s, SYSTEM, "driver_build", number, "build", "drivers", len(old), len(new_ids)
            )
            return new_ids

    @staticmethod
    def _carried_names(
        s: Session,
        old: Sequence[Driver],
        build: DriverBuild,
        pinned_hits: dict[str, tuple[int, float]],
    ) -> dict[int, str]:
        """Names a lead gave replaced drivers, for the new group holding most of their calls,
        so a rebuild does not undo a rename."""
        renamed = {d.id: d.name for d in old if d.name != driver_name(d.keywords or [])}
        if not renamed:
            return {}
        was = dict(
            s.execute(
                select(CallDriver.call_id, CallDriver.driver_id).where(
                    CallDriver.driver_id.in_(list(renamed))
                )
            ).all()
        )
        best: dict[int, tuple[int, int]] = {}  # old driver -> (calls, group key)
        for g in build.groups:
            held = Counter(was[c] for c in g.call_ids if c in was and c not in pinned_hits)
            for driver_id, n in held.items():
                if n > best.get(driver_id, (0, -1))[0]:
                    best[driver_id] = (n, g.key)
        return {key: renamed[driver_id] for driver_id, (_, key) in best.items()}

    def pinned_drivers(self) -> list[PinnedCentroid]:
        """Centroids of the pinned drivers, for labelling new calls."""
        with self._tx() as s:
            return [
                PinnedCentroid(driver_id=d.id, name=d.name, centroid=d.centroid, center=d.center)
                for d in s.scalars(select(Driver).where(Driver.active, Driver.pinned))
            ]

    def drivers_assigned(self, call_ids: Sequence[str] | None = None) -> set[str]:
        """Call ids that already have a driver row (any label, "other" included)."""
        with self._tx() as s:
            query = select(CallDriver.call_id)
            if call_ids is not None:
                query = query.where(CallDriver.call_id.in_(list(call_ids)))
            return set(s.scalars(query))

    def driver_name_of(self, call_id: str) -> str | None:
        """The name of the call's driver, for the alerts' spike rule (None: no driver yet,
        or "other")."""
        with self._tx() as s:
            return s.scalar(
                select(Driver.name)
                .join(CallDriver, CallDriver.driver_id == Driver.id)
                .where(CallDriver.call_id == call_id)
            )

    def record_call_drivers(self, rows: Sequence[CallDriverRow]) -> None:
        """Upsert the drivers the pipeline gave new calls."""
        with self._tx(write=True) as s:
            self._record(s, rows)

    def _record(self, s: Session, rows: Sequence[CallDriverRow]) -> None:
        now = self.now()
        existing = {
            r.call_id: r
            for r in s.scalars(
                select(CallDriver).where(CallDriver.call_id.in_([r.opening.call_id for r in rows]))
            )
        }
        for r in rows:
            o = r.opening
            row = existing.get(o.call_id) or CallDriver(call_id=o.call_id)
            row.driver_id = r.driver_id
            row.similarity = r.similarity
            row.how = r.how
            row.opening = o.text
            row.language = o.language
            row.customer_id = o.customer_id
            row.started_at = o.started_at
            row.auto_passed = o.auto_passed
            row.customer_sentiment = o.customer_sentiment
            row.assigned_at = now
            if o.call_id not in existing:
                s.add(row)

    # ---- reading

    @staticmethod
    def _driver(s: Session, driver_id: int) -> Driver:
        d = s.get(Driver, driver_id)
        if d is None:
            raise NotFoundError(f"driver {driver_id} not found")
        return d

    @staticmethod
    def _rows(s: Session) -> list[tuple[CallDriver, bool | None, float | None]]:
        """Every call's driver row with the pass that counts (a lead's final where set)."""
        query = select(
            CallDriver, Call.final_passed, Call.auto_passed, Call.customer_sentiment_mean
        ).join(Call, Call.call_id == CallDriver.call_id, isouter=True)
        out = []
        for cd, final, auto, sentiment in s.execute(query):
            passed = final if final is not None else auto if auto is not None else cd.auto_passed
            out.append((cd, passed, sentiment if sentiment is not None else cd.customer_sentiment))
        return out

    @action(auth.TRENDS, "see call drivers", system=True)
    def list_drivers(
        self, tx: Tx, *, repeat_days: int = REPEAT_DAYS, include_inactive: bool = False
    ) -> list[DriverView]:
        """Drivers, largest first, with their calls' pass rate, sentiment and repeat callers."""
        s = tx.s
        rows = self._rows(s)
        repeat = repeated_calls(
            ((cd.call_id, cd.customer_id, cd.started_at) for cd, _, _ in rows), repeat_days
        )
        stats: dict[int | None, _Stats] = defaultdict(_Stats)
        for cd, passed, sentiment in rows:
            stats[cd.driver_id].add(passed, sentiment, repeat.get(cd.call_id))
        query = select(Driver)
        if not include_inactive:
            query = query.where(Driver.active)
        drivers = list(s.scalars(query))
        example_ids = {c for d in drivers for c in d.examples}
        openings = {
            cd.call_id: cd
            for cd in s.scalars(select(CallDriver).where(CallDriver.call_id.in_(example_ids)))
        }
        views = []
        for d in drivers:
            values = stats[d.id].values() if d.id in stats else _Stats().values()
            views.append(
                DriverView(
                    id=d.id,
                    name=d.name,
                    keywords=list(d.keywords or []),
                    examples=[
                        DriverExample(
                            call_id=c,
                            opening=openings[c].opening if c in openings else "",
                            started_at=openings[c].started_at if c in openings else None,
                        )
                        for c in d.examples
                    ],
                    pinned=d.pinned,
                    active=d.active,
                    merged_into=d.merged_into,
                    build=d.build,
                    **values,  # type: ignore[arg-type]
                )
            )
        return sorted(views, key=lambda v: (-v.calls, v.id))

    @action(auth.TRENDS, "see call drivers")
    def driver_trends(self, tx: Tx, *, repeat_days: int = REPEAT_DAYS) -> list[DriverWeek]:
        """Calls, pass rate, customer sentiment and repeat callers per driver per week."""
        s = tx.s
        rows = self._rows(s)
        repeat = repeated_calls(
            ((cd.call_id, cd.customer_id, cd.started_at) for cd, _, _ in rows), repeat_days
        )
        names = {d.id: d.name for d in s.scalars(select(Driver))}
        stats: dict[tuple[date | None, int | None], _Stats] = defaultdict(_Stats)
        for cd, passed, sentiment in rows:
            stats[(week_of(cd.started_at), cd.driver_id)].add(
                passed, sentiment, repeat.get(cd.call_id)
            )
        out = [
            DriverWeek(
                week=week,
                driver_id=driver_id,
                driver=names.get(driver_id, OTHER) if driver_id is not None else OTHER,
                **st.values(),  # type: ignore[arg-type]
            )
            for (week, driver_id), st in stats.items()
        ]
        return sorted(out, key=lambda w: (w.week or date.min, w.driver))

    # ---- leads' edits

    @action(auth.LEADS, "rename call drivers", write=True)
    def rename_driver(self, tx: Tx, driver_id: int, name: str) -> DriverView:
        """Give a driver the name the centre uses for it."""
        clean = " ".join(name.split())
        if not clean:
            raise QAError("a driver needs a name")
        if len(clean) > NAME_MAX:
            raise QAError(f"a driver's name is at most {NAME_MAX} characters")
        d = self._driver(tx.s, driver_id)
        self._changes(tx.s, tx.by, "driver", d.id, d, {"name": clean})
        tx.s.flush()
        return self._view(tx.s, d)

    @action(auth.LEADS, "pin call drivers", write=True)
    def pin_driver(self, tx: Tx, driver_id: int, pinned: bool = True) -> DriverView:
        """A pinned driver labels new calls and is kept when drivers are built again."""
        d = self._driver(tx.s, driver_id)
        if not d.active:
            raise QAError(f"driver {driver_id} was merged away or replaced; pin the current one")
        self._changes(tx.s, tx.by, "driver", d.id, d, {"pinned": bool(pinned)})
        tx.s.flush()
        return self._view(tx.s, d)

    @action(auth.LEADS, "merge call drivers", write=True)
    def merge_drivers(self, tx: Tx, source_id: int, target_id: int) -> DriverView:
        """Fold one driver into another: its calls move, the centroid becomes the mean of
        both weighted by calls, and the keywords are counted again over the merged calls."""
        if source_id == target_id:
            raise QAError("a driver cannot be merged into itself")
        s = tx.s
        src, dst = self._driver(s, source_id), self._driver(s, target_id)
        if not (src.active and dst.active):
            raise QAError("both drivers must be current (not merged away or replaced)")
        n_src = len(
            list(s.scalars(select(CallDriver.call_id).where(CallDriver.driver_id == src.id)))
        )
        n_dst = len(
            list(s.scalars(select(CallDriver.call_id).where(CallDriver.driver_id == dst.id)))
        )
        w = (n_src / (n_src + n_dst)) if n_src + n_dst else 0.5
        if src.centroid and dst.centroid and len(src.centroid) == len(dst.centroid):
            mixed = [(1 - w) * a + w * b for a, b in zip(dst.centroid, src.centroid, strict=True)]
            norm = sum(v * v for v in mixed) ** 0.5 or 1.0
            centre = [(1 - w) * a + w * b for a, b in zip(dst.center, src.center, strict=True)]
            dst.centroid = [round(v / norm, 6) for v in mixed]
            dst.center = [round(v, 6) for v in centre]
        s.execute(
            update(CallDriver)
            .where(CallDriver.driver_id == src.id)
            .values(driver_id=dst.id, how="merge")
        )
        self._changes(
            s, tx.by, "driver", src.id, src, {"active": False, "merged_into": dst.id}, "merge"
        )
        examples = list(dict.fromkeys([*dst.examples, *src.examples]))[:EXAMPLES]
        self._changes(s, tx.by, "driver", dst.id, dst, {"examples": examples}, "merge")
        s.flush()
        dst.keywords = self._keywords(s).get(dst.id, dst.keywords)
        self._audit(s, tx.by, "driver", dst.id, "merge", "merged", None, src.id)
        s.flush()
        return self._view(s, dst)

    def _keywords(self, s: Session) -> dict[int, list[str]]:
        texts: dict[int, list[str]] = defaultdict(list)
        for driver_id, opening in s.execute(
            select(CallDriver.driver_id, CallDriver.opening)
            .join(Driver, Driver.id == CallDriver.driver_id)
            .where(Driver.active)
            .order_by(CallDriver.call_id)
        ):
            if len(texts[driver_id]) < KEYWORD_TEXTS:
                texts[driver_id].append(opening)
        return class_keywords(texts)

    def _view(self, s: Session, d: Driver) -> DriverView:
        calls = list(s.scalars(select(CallDriver.call_id).where(CallDriver.driver_id == d.id)))
        return DriverView(
            id=d.id,
            name=d.name,
            keywords=list(d.keywords or []),
            examples=[DriverExample(call_id=c) for c in d.examples],
            calls=len(calls),
            pinned=d.pinned,
            active=d.active,
            merged_into=d.merged_into,
            build=d.build,
        )
