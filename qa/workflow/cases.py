"""The case library: calls kept as good examples or common mistakes, for training."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from qa.errors import QAError
from qa.workflow import auth
from qa.workflow.access import CallAccess
from qa.workflow.actions import Act, Tx, action, staged_action
from qa.workflow.inputs import CaseInput, SearchInput
from qa.workflow.models import Case
from qa.workflow.views import CaseKind, CaseView


def case_view(c: Case) -> CaseView:
    return CaseView(
        id=c.id,
        call_id=c.call_id,
        kind=CaseKind(c.kind),
        title=c.title,
        notes=c.notes,
        tags=list(c.tags or []),
        created_by=c.created_by,
        created_at=c.created_at,
    )


class Cases(CallAccess):
    """Adding to and searching the case library."""

    @staged_action(auth.CASE_EDITORS, "add cases", write=True)
    def add_case(
        self,
        act: Act,
        call_id: str,
        kind: CaseKind | str,
        title: str,
        notes: str = "",
        tags: Iterable[str] = (),
    ) -> CaseView:
        """Put a call in the training library as a good example or a common mistake."""
        kind = CaseKind(kind)
        clean_tags = list(dict.fromkeys(t.strip().casefold() for t in tags if t.strip()))
        CaseInput(call_id=call_id, notes=notes, tags=clean_tags)
        if not title.strip():
            raise QAError("a case needs a title")
        with act.tx(write=True) as tx:
            s, user = tx.s, tx.user
            self._call(s, user, call_id)
            case = Case(
                call_id=call_id,
                kind=kind.value,
                title=title.strip(),
                notes=notes,
                tags=clean_tags,
                created_by=user.username,
                created_at=self.now(),
            )
            s.add(case)
            s.flush()
            self._audit(s, user.username, "case", case.id, "create", "call_id", None, call_id)
            return case_view(case)

    @action(auth.CASE_READERS, "read the case library")
    def search_cases(
        self,
        tx: Tx,
        text: str | None = None,
        kind: CaseKind | str | None = None,
        *,
        tag: str | None = None,
    ) -> list[CaseView]:
        """Cases whose title, notes, tags or call id contain every word of `text`."""
        SearchInput(text=text, tag=tag)
        query = select(Case).order_by(Case.created_at.desc(), Case.id.desc())
        if kind is not None:
            query = query.where(Case.kind == CaseKind(kind).value)
        found = [case_view(c) for c in tx.s.scalars(query)]
        # matched here, not in SQL: SQLite's lower() folds ASCII only, and tags are JSON
        words = (text or "").casefold().split()
        if words:
            found = [
                c
                for c in found
                if all(
                    w in " ".join([c.title, c.notes, c.call_id, *c.tags]).casefold() for w in words
                )
            ]
        if tag is not None:
            found = [c for c in found if tag.strip().casefold() in c.tags]
        return found
