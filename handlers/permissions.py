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


_OFFICER_ROLES = frozenset({Role.OFFICER, Role.ADMIN})


def is_officer(member: Member | None) -> bool:
    """Tell whether the member acts as an officer at all."""
    return (
        member is not None
        and member.status == MemberStatus.ACTIVE
        and member.role in _OFFICER_ROLES
    )


def can(member: Member | None, action: Action, target: Unit, member_unit: Unit) -> bool:
    """Decide whether `member` (of `member_unit`) may perform `action` on `target`.

    Officers act on their own unit and everything below it, never sideways or above;
    admins likewise, from the unit they belong to.
    """
    if not is_officer(member) or member is None or member.unit_id != member_unit.id:
        return False
    if action == Action.SET_TARGETS:
        # Targets are handed down one level: an officer sets those of the units right below.
        return target.parent_id == member_unit.id
    return is_within(target, member_unit)
