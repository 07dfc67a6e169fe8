"""Reviews, calibration, disputes, coaching, users and the audit log.

The dashboard talks to this package only through `Workflow` and the views below; every
action declares who may do it (`qa.workflow.actions`) and is checked here, below the UI.
"""

from qa.workflow.auto_human import AutoHumanGroup, AutoHumanItem, AutoHumanStats
from qa.workflow.inputs import LIMITS, InvalidInput
from qa.workflow.service import SYSTEM, NotFoundError, Workflow, open_workflow
from qa.workflow.throttle import LoginPolicy, LoginThrottled
from qa.workflow.views import (
    AgreementStats,
    AuditView,
    CalibrationItem,
    CalibrationView,
    CallFilter,
    CallItemView,
    CallView,
    CaseKind,
    CaseView,
    CoachingEffect,
    CoachingStatus,
    CoachingView,
    DisputeStatus,
    DisputeView,
    FinalOutcomeRow,
    ItemAgreement,
    ItemEffect,
    ReviewerAgreement,
    ReviewItemInput,
    ReviewItemView,
    ReviewStatus,
    ReviewView,
    UserRole,
    UserView,
)

__all__ = [
    "LIMITS",
    "SYSTEM",
    "AgreementStats",
    "AuditView",
    "AutoHumanGroup",
    "AutoHumanItem",
    "AutoHumanStats",
    "CalibrationItem",
    "CalibrationView",
    "CallFilter",
    "CallItemView",
    "CallView",
    "CaseKind",
    "CaseView",
    "CoachingEffect",
    "CoachingStatus",
    "CoachingView",
    "DisputeStatus",
    "DisputeView",
    "FinalOutcomeRow",
    "InvalidInput",
    "ItemAgreement",
    "ItemEffect",
    "LoginPolicy",
    "LoginThrottled",
    "NotFoundError",
    "ReviewItemInput",
    "ReviewItemView",
    "ReviewStatus",
    "ReviewView",
    "ReviewerAgreement",
    "UserRole",
    "UserView",
    "Workflow",
    "open_workflow",
]
