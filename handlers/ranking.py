"""/bangxephang: the ranking of an emulation cluster's units by initiatives.

A member sees the cluster their unit (or its nearest clustered ancestor) competes in; an
officer may also pick any cluster with units in their subtree.
"""

from __future__ import annotations

from fractions import Fraction

from handlers.context import Context
from handlers.permissions import Action, can, is_officer
from handlers.scope import Scope, member_scope
from storage import ranking, units
from storage.ranking import Entry, Ranking
from storage.units import is_within

FLOW = "ranking"
MAX_CLUSTERS = 30  # offered as buttons


async def show(ctx: Context) -> None:
    """Show the member's cluster, or let an officer pick one of their subtree's."""
    scope = await member_scope(ctx)
    if scope is None:
        return
    options = await _allowed(ctx, scope)
    if not options:
        key = "ranking.none_in_subtree" if is_officer(scope.member) else "ranking.no_cluster"
        ctx.say(key, unit=scope.unit.name)
        return
    if len(options) == 1:
        await _show(ctx, scope, options[0])
        return
    shown = options[:MAX_CLUSTERS]
    ctx.enter(FLOW, "pick", clusters=shown)
    ctx.say(
        "ranking.ask_cluster",
        choices=[ctx.choice(name, f"k{index}") for index, name in enumerate(shown)],
    )


async def resume(ctx: Context) -> None:
    """Show the cluster pressed, once more checked against what this member may see."""
    scope = await member_scope(ctx)
    if scope is None:
        ctx.leave()
        return
    offered = [str(name) for name in ctx.conversation.data.get("clusters", [])]
    pressed = ctx.pressed or ""
    index = int(pressed[1:]) if pressed.startswith("k") and pressed[1:].isdigit() else None
    if index is None or index >= len(offered):
        ctx.say(
            "ranking.choose_cluster",
            choices=[ctx.choice(name, f"k{i}") for i, name in enumerate(offered)],
        )
        return
    cluster = offered[index]
    if cluster not in await _allowed(ctx, scope):
        ctx.leave()
        ctx.say("ranking.gone")
        return
    ctx.leave()
    await _show(ctx, scope, cluster)


async def _allowed(ctx: Context, scope: Scope) -> list[str]:
    """Return the clusters this member may look at: their own first, then their subtree's."""
    own = await ranking.cluster_of(ctx.session, scope.unit)
    found = [own] if own else []
    if can(scope.member, Action.VIEW_RANKING, scope.unit, scope.unit):
        for name in await ranking.clusters_within(ctx.session, scope.unit):
            if name in found:
                continue
            members = await ranking.cluster_units(ctx.session, scope.unit, name)
            if any(can(scope.member, Action.VIEW_RANKING, u, scope.unit) for u in members):
                found.append(name)
    return found


async def _show(ctx: Context, scope: Scope, cluster: str) -> None:
    root = await units.get(ctx.session, scope.campaign.root_unit_id)
    if root is None:
        ctx.say("campaign.none")
        return
    members = await ranking.cluster_units(ctx.session, root, cluster)
    found = await ranking.entries(ctx.session, members, scope.campaign.id)
    per_member, of_target = ranking.by_member(found), ranking.by_target(found)

    def you(entry: Entry) -> str:
        return ctx.t("ranking.you") if is_within(scope.unit, entry.unit) else ""

    lines = [
        ctx.t("ranking.title", cluster=cluster, campaign=scope.campaign.name, units=len(found)),
        ctx.t("ranking.by_member"),
    ]
    lines += [
        ctx.t(
            "ranking.member_line",
            rank=r.rank,
            unit=r.entry.unit.name,
            you=you(r.entry),
            ratio=_decimal(r.entry.per_member),
            accepted=r.entry.accepted,
            members=r.entry.members,
        )
        for r in per_member.ranked
    ] or [ctx.t("ranking.nobody_ranked")]
    if per_member.unranked:
        lines.append(ctx.t("ranking.no_members", units=_names(per_member.unranked)))
    lines.append(ctx.t("ranking.by_target"))
    lines += [
        ctx.t(
            "ranking.target_line",
            rank=r.rank,
            unit=r.entry.unit.name,
            you=you(r.entry),
            percent=round(100 * (r.entry.of_target or 0)),
            accepted=r.entry.accepted,
            target=r.entry.target,
        )
        for r in of_target.ranked
    ] or [ctx.t("ranking.nobody_ranked")]
    if of_target.unranked:
        lines.append(ctx.t("ranking.no_target", units=_names(of_target.unranked)))
    if _has_ties(per_member) or _has_ties(of_target):
        lines.append(ctx.t("ranking.tie_note"))
    ctx.reply("\n".join(lines))


def _decimal(value: Fraction | None) -> str:
    """Write a ratio with two decimals the Vietnamese way: 0,08."""
    return f"{float(value or 0):.2f}".replace(".", ",")


def _names(found: list[Entry]) -> str:
    return ", ".join(e.unit.name for e in found)


def _has_ties(found: Ranking) -> bool:
    ranks = [r.rank for r in found.ranked]
    return len(ranks) != len(set(ranks))
