"""Who may do what to which unit: the one place that decides."""

from __future__ import annotations

import enum

from storage.models import Member, MemberStatus, Role, Unit
from storage.units import is_within


class Action(enum.StrEnum):
    INVITE_MEMBER = "invite_member"
    INVITE_OFFICER = "invite_officer"
    DECIDE_JOIN = "decide_join"
    COMMIT_FOR_UNIT = "commit_for_unit"
    ANSWER_PACT_FOR_UNIT = "answer_pact_for_unit"
    REGISTER_CONGRESS_WORK = "register_congress_work"
    VIEW_UNIT_PROGRESS = "view_unit_progress"
    BROADCAST = "broadcast"
    REVIEW_INITIATIVE = "review_initiative"
    SET_TARGETS = "set_targets"
    COMMEND = "commend"
    REVIEW_STORY = "review_story"
    SUBMIT_REPORT = "submit_report"
    EXPORT_REPORT = "export_report"
    VIEW_RANKING = "view_ranking"
    VIEW_SCHEDULE = "view_schedule"
    VIEW_AUDIT = "view_audit"
    RECORD_LEAVE = "record_leave"
    # Open to every active member, within their own unit and below.
    NOMINATE_STORY = "nominate_story"


_OFFICER_ROLES = frozenset({Role.OFFICER, Role.ADMIN})
_MEMBER_ACTIONS = frozenset({Action.NOMINATE_STORY})
_ADMIN_ACTIONS = frozenset({Action.VIEW_AUDIT})

# Catalogue keys of the refusals, as a user reads them.
DENIED = "permission.denied"
OFFICERS_ONLY = "permission.officers_only"
ADMINS_ONLY = "permission.admins_only"
OUTSIDE_SUBTREE = "permission.outside_subtree"


def is_officer(member: Member | None) -> bool:
    """Tell whether the member acts as an officer at all (for presentation, never for access)."""
    return (
        member is not None
        and member.status == MemberStatus.ACTIVE
        and member.role in _OFFICER_ROLES
    )


def refusal(
    member: Member | None, action: Action, target: Unit | None, member_unit: Unit | None
) -> str | None:
    """Return the catalogue key saying why `member` may not do `action` on `target`, or None.

    Officers act on their own unit and everything below it, never sideways or above;
    admins likewise, from the unit they belong to.
    """
    if (
        member is None
        or member.status != MemberStatus.ACTIVE
        or member_unit is None
        or member.unit_id != member_unit.id
    ):
        return DENIED
    if action in _ADMIN_ACTIONS and member.role != Role.ADMIN:
        return ADMINS_ONLY
    if action not in _MEMBER_ACTIONS and member.role not in _OFFICER_ROLES:
        return OFFICERS_ONLY
    if target is None:
        return DENIED
    if action == Action.SET_TARGETS:
        # Targets are handed down one level: an officer sets those of the units right below.
        return None if target.parent_id == member_unit.id else OUTSIDE_SUBTREE
    return None if is_within(target, member_unit) else OUTSIDE_SUBTREE


def can(
    member: Member | None, action: Action, target: Unit | None, member_unit: Unit | None
) -> bool:
    """Decide whether `member` (of `member_unit`) may perform `action` on `target`."""
    return refusal(member, action, target, member_unit) is None
