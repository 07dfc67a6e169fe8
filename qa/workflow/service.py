"""The workflow service: every read and write the dashboard and the CLI make.

`Workflow` is assembled from one class per domain (accounts, calls, reviews and
calibration, disputes and final scores, coaching, cases, roles, original audio, audit,
automatic vs human scores, alerts, call drivers, calls in progress), which share one unit
of work (`qa.workflow.unit`): engine, transactions, clock and audit writer. Each action
declares once who may do it (`qa.workflow.actions`), and the user is re-read from the
database on every call, so a page that forgets to hide a button still cannot leak or
change anything, and a disabled account or a changed role takes effect at once, whatever
view object a page still holds.
"""

from __future__ import annotations

from typing import Any

from qa.workflow.accounts import Accounts
from qa.workflow.alerts import Alerts
from qa.workflow.audit import Audit
from qa.workflow.auto_human import AutoVsHuman
from qa.workflow.calibration import Calibration
from qa.workflow.calls import Calls
from qa.workflow.cases import Cases
from qa.workflow.coaching import CoachingSessions
from qa.workflow.disputes import Disputes
from qa.workflow.drivers import Drivers
from qa.workflow.live import Live
from qa.workflow.originals import Originals
from qa.workflow.roles import Roles
from qa.workflow.throttle import LoginPolicy
from qa.workflow.unit import SYSTEM, WRITE_LOCK_KEY, NotFoundError

__all__ = ["SYSTEM", "WRITE_LOCK_KEY", "NotFoundError", "Workflow", "open_workflow"]


class Workflow(
    Accounts,
    Calls,
    Calibration,
    Disputes,
    CoachingSessions,
    Cases,
    Roles,
    Originals,
    Audit,
    AutoVsHuman,
    Alerts,
    Drivers,
    Live,
):
    """Reviews, calibration, disputes, coaching, users and audit over one database URL."""


def open_workflow(settings: Any) -> Workflow:
    """The workflow database named by the settings (SQLite under QA_HOME by default)."""
    return Workflow(
        settings.resolved_database_url,
        session_ttl_minutes=settings.session_ttl_minutes,
        login_policy=LoginPolicy.from_settings(settings),
    )
