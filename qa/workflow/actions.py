"""Who may do what, declared once per action.

Every public action of the workflow carries `@action(roles, what)` (or `@staged_action`):
the declaration opens the transaction, re-reads the acting user from the database and
checks their role before the body runs, so a body cannot forget the check and a disabled
account or a changed role takes effect at once. Rules about *which* records a permitted
user sees (an agent sees only their own calls) stay in the bodies.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.orm import Session

from qa.errors import AccessDenied
from qa.workflow.auth import EVERYONE
from qa.workflow.models import User
from qa.workflow.unit import SYSTEM, UnitOfWork
from qa.workflow.views import UserRole, UserView

__all__ = ["EVERYONE", "Act", "Permission", "Tx", "action", "permission_of", "staged_action"]

P = ParamSpec("P")
R = TypeVar("R")
W = TypeVar("W", bound=UnitOfWork)


@dataclass(frozen=True)
class Permission:
    """The roles an action is open to; `system`: the command line (actor None) may too."""

    roles: frozenset[UserRole]
    what: str
    write: bool = False
    system: bool = False
    staged: bool = False


@dataclass(frozen=True)
class Tx:
    """An open transaction and the checked acting user (None: the command line)."""

    s: Session
    actor: User | None
    permitted: bool = True

    @property
    def user(self) -> User:
        if self.actor is None:
            raise AccessDenied("sign in first")
        return self.actor

    @property
    def by(self) -> str:
        """The name the audit log records for this action."""
        return SYSTEM if self.actor is None else self.actor.username


def role_of(user: User) -> UserRole:
    return UserRole(user.role)


def load_user(s: Session, actor: UserView | None) -> User:
    """The acting user as the database knows them now."""
    if actor is None:
        raise AccessDenied("sign in first")
    user = s.get(User, actor.id)
    if user is None or user.username != actor.username or not user.active:
        raise AccessDenied(f"user {actor.username!r} is unknown or disabled")
    return user


def require(user: User, roles: frozenset[UserRole], what: str) -> None:
    if role_of(user) not in roles:
        allowed = ", ".join(sorted(r.value for r in roles))
        raise AccessDenied(f"{user.username} ({user.role}) may not {what}; needs {allowed}")


def _enter(s: Session, actor: UserView | None, perm: Permission, enforce: bool) -> Tx:
    if actor is None and perm.system:
        return Tx(s, None)
    user = load_user(s, actor)
    if enforce:
        require(user, perm.roles, perm.what)
    return Tx(s, user, role_of(user) in perm.roles)


class Act:
    """A staged action's way into the database: every transaction checks the actor again."""

    def __init__(self, work: UnitOfWork, actor: UserView | None, perm: Permission) -> None:
        self.work, self.actor, self.permission = work, actor, perm

    @contextmanager
    def tx(self, *, write: bool = False, enforce: bool = True) -> Iterator[Tx]:
        """`enforce=False` hands a refused actor in with `permitted` False, for actions
        that must record a refused attempt before refusing it."""
        with self.work._tx(write=write) as s:
            yield _enter(s, self.actor, self.permission, enforce)


def _public_signature(body: Callable[..., object], system: bool) -> inspect.Signature:
    """The body's signature with the actor where the body takes its Tx or Act."""
    sig = inspect.signature(body)
    params = list(sig.parameters.values())
    params[0] = params[0].replace(kind=inspect.Parameter.POSITIONAL_ONLY)
    params[1] = params[1].replace(
        name="actor",
        kind=inspect.Parameter.POSITIONAL_ONLY,
        annotation="UserView | None" if system else "UserView",
    )
    return sig.replace(parameters=params)


def _declare(
    perm: Permission, wrapper: Callable[..., R], body: Callable[..., R]
) -> Callable[..., R]:
    functools.update_wrapper(wrapper, body)
    del wrapper.__wrapped__  # type: ignore[attr-defined]  # callers see the public signature
    wrapper.__signature__ = _public_signature(body, perm.system)  # type: ignore[attr-defined]
    wrapper.__permission__ = perm  # type: ignore[attr-defined]
    return wrapper


def action(
    roles: frozenset[UserRole], what: str, *, write: bool = False, system: bool = False
) -> Callable[
    [Callable[Concatenate[W, Tx, P], R]], Callable[Concatenate[W, UserView | None, P], R]
]:
    """The body runs inside one transaction (a writing one if `write`), given the Tx."""
    perm = Permission(frozenset(roles), what, write, system)

    def decorate(
        body: Callable[Concatenate[W, Tx, P], R],
    ) -> Callable[Concatenate[W, UserView | None, P], R]:
        def wrapper(self: W, actor: UserView | None, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with self._tx(write=write) as s:
                return body(self, _enter(s, actor, perm, True), *args, **kwargs)

        return _declare(perm, wrapper, body)

    return decorate


def staged_action(
    roles: frozenset[UserRole], what: str, *, write: bool = False, system: bool = False
) -> Callable[
    [Callable[Concatenate[W, Act, P], R]], Callable[Concatenate[W, UserView | None, P], R]
]:
    """For actions with work outside any transaction (a slow hash, models, checking the
    input first): the body gets an Act and opens its transactions with `act.tx()`, each of
    which loads and checks the actor before handing out the session."""
    perm = Permission(frozenset(roles), what, write, system, staged=True)

    def decorate(
        body: Callable[Concatenate[W, Act, P], R],
    ) -> Callable[Concatenate[W, UserView | None, P], R]:
        def wrapper(self: W, actor: UserView | None, /, *args: P.args, **kwargs: P.kwargs) -> R:
            return body(self, Act(self, actor, perm), *args, **kwargs)

        return _declare(perm, wrapper, body)

    return decorate


def permission_of(method: object) -> Permission | None:
    """The permission an action declares, None for a method that declares none."""
    return getattr(method, "__permission__", None)
