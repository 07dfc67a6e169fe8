"""The unredacted recording of a call, where a site keeps one."""

from __future__ import annotations

from qa.errors import AccessDenied
from qa.store import Store
from qa.workflow import auth
from qa.workflow.access import CallAccess
from qa.workflow.actions import Act, staged_action
from qa.workflow.unit import NotFoundError


class Originals(CallAccess):
    """Reading original recordings, every attempt audited."""

    @staged_action(auth.ORIGINAL_AUDIO, "play original recordings", write=True)
    def original_audio(self, act: Act, call_id: str, store: Store) -> bytes:
        """The unredacted recording of a call, for the roles granted it; every read, and
        every refused attempt, is written to the audit log before anything is returned.

        The role is checked with `enforce=False` so that a refusal is recorded first.
        """
        with act.tx(write=True, enforce=False) as tx:
            refused = not tx.permitted
            if not refused:
                try:
                    self._call(tx.s, tx.user, call_id)
                except AccessDenied:
                    refused = True
            self._audit(
                tx.s,
                tx.by,
                "call",
                call_id,
                "read_original_refused" if refused else "read_original",
            )
        if refused:
            raise AccessDenied(
                f"{tx.by} may not play the original recording of "
                f"{call_id!r}; needs "
                f"{', '.join(sorted(r.value for r in auth.ORIGINAL_AUDIO))}"
            )
        from qa.playback import original_key

        key = original_key(store, call_id)
        if key is None:
            raise NotFoundError(
                f"call {call_id!r}: the original recording is not kept (only the redacted copy is)"
            )
        return store.get_bytes(key)
