"""Sign-in throttling: failed logins per account and per client address, kept in the database.

Counting in the database (not in a process) makes the limits hold across dashboard
processes and restarts. Each attempt is counted *before* its password is checked, in the
serialised writing transaction, so parallel guesses cannot all slip past the limit while
the slow hash runs; a successful login forgives the attempt and clears both counters.

After the second consecutive failure an account must wait before its next attempt (the
wait doubling each time), and at `max_failures` it is locked: even the right password is
refused until `lockout_seconds` pass or an admin unlocks it. An address is locked after
`max_address_failures` consecutive failures over any accounts (password spraying). A
quiet spell of `lockout_seconds` starts a counter afresh. Unknown usernames are counted
and locked like real ones, so the answers do not tell which accounts exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from qa.errors import AccessDenied
from qa.workflow.models import Base

ACCOUNT = "account"
ADDRESS = "address"


class LoginFailure(Base):
    """Consecutive failed logins of one account name or one client address.

    Declared here beside the rules that use it; it is created with the other tables,
    since the unit of work imports this module before `create_all`.
    """

    __tablename__ = "login_failures"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # account or address
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime]


class LoginThrottled(AccessDenied):
    """A login refused without checking the password: locked, or asked to wait."""


@dataclass(frozen=True)
class LoginPolicy:
    """How many failures lock, for how long, and the wait before that (settings QA_LOGIN_*)."""

    max_failures: int = 5
    lockout_seconds: float = 900.0
    max_address_failures: int = 20
    delay_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: Any) -> LoginPolicy:
        return cls(
            max_failures=settings.login_max_failures,
            lockout_seconds=settings.login_lockout_seconds,
            max_address_failures=settings.login_max_failures_per_address,
            delay_seconds=settings.login_delay_seconds,
        )

    def delay(self, failures: int) -> float:
        """Seconds to wait after `failures` consecutive failures: none after the first,
        then `delay_seconds`, doubling with each further failure."""
        return 0.0 if failures < 2 else self.delay_seconds * 2 ** (failures - 2)

    def locked_message(self) -> str:
        minutes = math.ceil(self.lockout_seconds / 60)
        return (
            f"account locked after {self.max_failures} failed logins; ask an administrator "
            f"to unlock it, or try again in {minutes} minute{'s' if minutes != 1 else ''}"
        )


def _count(row: LoginFailure | None, now: datetime, policy: LoginPolicy) -> int:
    """Consecutive failures that still count: none after a quiet spell of the lockout."""
    if row is None or now - row.last_failure_at >= timedelta(seconds=policy.lockout_seconds):
        return 0
    return row.failures


def admit(
    s: Session, policy: LoginPolicy, now: datetime, username: str, address: str | None
) -> int:
    """Refuse a locked or too-early attempt, else count it as a failure until it succeeds.

    Returns the account's consecutive failures including this attempt.
    """
    keys = [(ACCOUNT, username)] + ([(ADDRESS, address)] if address else [])
    rows = {kind: s.get(LoginFailure, (kind, name)) for kind, name in keys}
    account = _count(rows[ACCOUNT], now, policy)
    if account >= policy.max_failures:
        raise LoginThrottled(policy.locked_message())
    if address is not None and _count(rows[ADDRESS], now, policy) >= policy.max_address_failures:
        minutes = math.ceil(policy.lockout_seconds / 60)
        raise LoginThrottled(
            f"too many failed logins from this address ({policy.max_address_failures} in a "
            f"row); try again in {minutes} minutes"
        )
    row = rows[ACCOUNT]
    if row is not None and account:
        wait = policy.delay(account) - (now - row.last_failure_at).total_seconds()
        if wait > 0:
            raise LoginThrottled(
                f"{account} failed logins in a row; wait {math.ceil(wait)} s before trying again"
            )
    for kind, name in keys:
        row = rows[kind]
        counted = _count(row, now, policy)
        if row is None:
            s.add(LoginFailure(kind=kind, name=name, failures=1, last_failure_at=now))
        else:
            row.failures, row.last_failure_at = counted + 1, now
    return account + 1


def forgive(s: Session, username: str, address: str | None) -> None:
    """A successful login: the account's and the address's counters start again."""
    s.execute(
        delete(LoginFailure).where(LoginFailure.kind == ACCOUNT, LoginFailure.name == username)
    )
    if address:
        s.execute(
            delete(LoginFailure).where(LoginFailure.kind == ADDRESS, LoginFailure.name == address)
        )


def unlock(s: Session, username: str) -> int:
    """Clear an account's failures (an admin's unlock); how many there were."""
    row = s.get(LoginFailure, (ACCOUNT, username))
    if row is None:
        return 0
    failures = row.failures
    s.delete(row)
    return failures
