"""What ``kefu.auth``'s rules need to know here about a case's target: who belongs to its group (the agents of the
configuration file's routing section). Who holds a contact is ``adapters.facts.holder``: the routing events tell."""

from collections.abc import Mapping

from services.escalation.domain.policy import EscalationPolicy


class CaseAccess:
    """The members of each escalation target: the agents of its group (and fallback group)."""

    def __init__(self, policy: EscalationPolicy, group_members: Mapping[str, frozenset[str]]) -> None:
        self._members = {
            name: frozenset().union(
                *(group_members.get(g, frozenset()) for g in (target.group, target.fallback_group) if g)
            )
            for name, target in policy.targets.items()
        }

    def members(self, target: str) -> frozenset[str]:
        """The agents who acknowledge and resolve ``target``'s cases."""
        return self._members.get(target, frozenset())

    def targets_of(self, agent_id: str) -> list[str]:
        """The targets whose cases ``agent_id`` may see and act on."""
        return sorted(name for name, members in self._members.items() if agent_id in members)
