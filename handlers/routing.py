"""The routing table: which command, flow and action reaches which handler, decided here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from handlers import (
    audit_log,
    broadcast,
    calendar,
    commendations,
    commitments,
    congress,
    initiatives,
    invite,
    join,
    link,
    mine,
    oversight,
    pacts,
    privacy,
    profile,
    progress,
    ranking,
    reports,
    review,
    schedule_view,
    stories,
    targets,
    upward,
)
from handlers import help as help_
from handlers.context import Context

Handler = Callable[[Context], Awaitable[None]]
ActionHandler = Callable[[Context, list[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Command:
    """A slash command; `keeps_flow` commands can be used without leaving a conversation."""

    handler: Handler
    keeps_flow: bool = False
    menu_key: str | None = None  # catalogue key of its description in the command menu


@dataclass(frozen=True, slots=True)
class Routes:
    commands: Mapping[str, Command]
    flows: Mapping[str, Handler]
    actions: Mapping[str, ActionHandler]
    # Text outside any conversation; by default a hint.
    text: Handler | None = None

    def menu(self) -> list[tuple[str, str]]:
        """Return (command, catalogue key) pairs for the messenger's command menu."""
        return [(name, c.menu_key) for name, c in self.commands.items() if c.menu_key]


def build_routes() -> Routes:
    """Assemble every feature's commands, flows and actions."""
    commands = {
        "start": Command(join.start, menu_key="menu.start"),
        "help": Command(help_.show, keeps_flow=True, menu_key="menu.help"),
        "trogiup": Command(help_.show, keeps_flow=True),
        "huy": Command(help_.cancel, keeps_flow=True, menu_key="menu.cancel"),
        "cancel": Command(help_.cancel, keeps_flow=True),
        "toi": Command(profile.show, keeps_flow=True, menu_key="menu.profile"),
        "lich": Command(calendar.show_calendar, keeps_flow=True, menu_key="menu.calendar"),
        "calendar": Command(calendar.show_calendar, keeps_flow=True),
        "phongtrao": Command(calendar.show_movements, keeps_flow=True, menu_key="menu.movements"),
        "dangky": Command(commitments.start, menu_key="menu.register"),
        "register": Command(commitments.start),
        "cuatoi": Command(mine.show, menu_key="menu.mine"),
        "mine": Command(mine.show),
        "congtrinh": Command(congress.start, menu_key="menu.congress"),
        "donvi": Command(oversight.show, menu_key="menu.units"),
        "units": Command(oversight.show),
        "moi": Command(invite.start, menu_key="menu.invite"),
        "yeucau": Command(join.list_requests, menu_key="menu.requests"),
        "requests": Command(join.list_requests),
        "thongbao": Command(broadcast.start, menu_key="menu.broadcast"),
        "broadcast": Command(broadcast.start),
        "sangkien": Command(initiatives.start, menu_key="menu.initiative"),
        "initiative": Command(initiatives.start),
        "duyet": Command(review.start, menu_key="menu.review"),
        "review": Command(review.start),
        "khenthuong": Command(commendations.start, menu_key="menu.commend"),
        "commend": Command(commendations.start),
        "guongsang": Command(stories.start, menu_key="menu.story"),
        "story": Command(stories.start),
        "nopbaocao": Command(upward.start, menu_key="menu.upward"),
        "upreport": Command(upward.start),
        "baocao": Command(reports.start, menu_key="menu.report"),
        "report": Command(reports.start),
        "bangxephang": Command(ranking.show, menu_key="menu.ranking"),
        "ranking": Command(ranking.show),
        "chitieu": Command(targets.start, menu_key="menu.targets"),
        "targets": Command(targets.start),
        "tiendo": Command(progress.show, keeps_flow=True, menu_key="menu.progress"),
        "progress": Command(progress.show, keeps_flow=True),
        "lichgui": Command(schedule_view.show, keeps_flow=True, menu_key="menu.schedule"),
        "schedule": Command(schedule_view.show, keeps_flow=True),
        "nhatky": Command(audit_log.show),  # admins only: listed in their help, not the menu
        "lienket": Command(link.start, menu_key="menu.link"),
        "link": Command(link.start),
        "dulieu": Command(privacy.show_data, keeps_flow=True, menu_key="menu.data"),
        "xoadulieu": Command(privacy.start_erase, menu_key="menu.erase"),
        "roidoan": Command(privacy.start_leave, menu_key="menu.leave"),
    }
    flows = {
        join.FLOW: join.resume,
        invite.FLOW: invite.resume,
        commitments.FLOW: commitments.resume,
        mine.FLOW: mine.resume,
        congress.FLOW: congress.resume,
        oversight.FLOW: oversight.resume,
        broadcast.FLOW: broadcast.resume,
        initiatives.FLOW: initiatives.resume,
        review.FLOW: review.resume,
        targets.FLOW: targets.resume,
        reports.FLOW: reports.resume,
        ranking.FLOW: ranking.resume,
        commendations.FLOW: commendations.resume,
        stories.FLOW: stories.resume,
        upward.FLOW: upward.resume,
        privacy.FLOW: privacy.resume,
        audit_log.FLOW: audit_log.resume,
    }
    actions = {
        join.DECIDE_ACTION: join.decide,
        commitments.PACT_ACTION: pacts.decide,
        stories.ACTION: stories.open_for_review,
        upward.ACTION: upward.open_form,
        link.PREFER_ACTION: link.prefer,
    }
    # A newcomer's invitation code typed on its own (Zalo has no deep links) joins them.
    return Routes(commands=commands, flows=flows, actions=actions, text=join.free_text)
