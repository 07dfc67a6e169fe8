"""Passwords, session tokens and who may do what.

Passwords are hashed with Argon2id; session tokens are random and only their SHA-256 is
stored, so a copy of the database does not let anyone log in.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from qa.workflow.views import UserRole

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8

# who may do what; the service checks these against the role stored in the database
REVIEWERS = frozenset({UserRole.INSPECTOR, UserRole.LEAD})
LEADS = frozenset({UserRole.LEAD})
SEE_ALL_CALLS = frozenset({UserRole.INSPECTOR, UserRole.LEAD, UserRole.MANAGER, UserRole.ADMIN})
SEE_ALL_REVIEWS = frozenset({UserRole.LEAD, UserRole.MANAGER})
COACHES = frozenset({UserRole.INSPECTOR, UserRole.LEAD})
STATS = frozenset({UserRole.LEAD, UserRole.MANAGER})
TRENDS = frozenset({UserRole.LEAD, UserRole.MANAGER})
AUDITORS = frozenset({UserRole.LEAD, UserRole.MANAGER, UserRole.ADMIN})
USER_ADMINS = frozenset({UserRole.ADMIN})
USER_READERS = frozenset({UserRole.LEAD, UserRole.MANAGER, UserRole.ADMIN})
CASE_EDITORS = frozenset({UserRole.INSPECTOR, UserRole.LEAD})
CASE_READERS = frozenset({UserRole.INSPECTOR, UserRole.LEAD, UserRole.MANAGER})
# the unredacted recording, where a site keeps it: every read is audited
ORIGINAL_AUDIO = frozenset({UserRole.LEAD})
AGENTS = frozenset({UserRole.AGENT})
# an agent reviews (scores) their own calls beside the inspectors: multi-person QA
REVIEW_WRITERS = REVIEWERS | AGENTS
REVIEW_READERS = SEE_ALL_REVIEWS | {UserRole.INSPECTOR, UserRole.AGENT}
CALIBRATORS = REVIEWERS | SEE_ALL_REVIEWS
# transcript search (qa.search): everyone who opens calls on the review page; agents get
# their own calls only
SEARCHERS = REVIEW_READERS
# every signed-in user; what each may see is then decided by the action itself
EVERYONE = frozenset(UserRole)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(hasher: PasswordHasher, password: str) -> str:
    return hasher.hash(password)


def verify_password(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A hash verified against when the username is unknown, so response time does not tell
# an attacker which usernames exist.
def dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_hex(8))
