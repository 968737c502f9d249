"""Who may serve what: for each agent, the queues whose requirement (at some bullseye step) and group it meets.

Computed once per index build, from the agents' skills, groups and capacity, which change only through a rebuild:
the index files agents into its heaps by it, the decision core looks up the agents it freed by hand in it, and the
stats count the contacts nobody can ever serve from it.
"""

from collections.abc import Mapping
from typing import NamedTuple

from contracts import Channel
from services.router.domain.entities import Agent, Queue, RoutingPolicy

# policies by which an agent's rank moves with every offer it gets, so the index enters it again after each
_REORDERING = frozenset({RoutingPolicy.LEAST_OCCUPIED, RoutingPolicy.ROUND_ROBIN})


class Eligibility(NamedTuple):
    """The answer of ``eligibility``."""

    # agent -> queue it may serve -> proficiency (the sum of its levels in the queue's own skills)
    eligible: dict[str, dict[str, int]]
    steps: dict[tuple[str, str], int]  # (agent, queue) -> the bullseye step it first qualifies at, where that is > 0
    reorders: set[str]  # agents whose rank moves with every offer (a queue's policy, phone exclusivity)
    servable: set[tuple[str, Channel]]  # (queue, channel) pairs some agent, in any presence, may ever serve


def eligibility(queues: Mapping[str, Queue], agents: Mapping[str, Agent]) -> Eligibility:
    """Which agents may serve which queues, at which bullseye step, and what follows from that."""
    eligible: dict[str, dict[str, int]] = {agent.id: {} for agent in agents.values()}
    steps: dict[tuple[str, str], int] = {}
    reorders: set[str] = set()
    holders = _holders(agents)
    for queue in queues.values():
        requirements = queue.requirements()
        for agent_id in _candidates(requirements[-1], holders, agents):
            agent = agents[agent_id]
            step = _first_step(agent, queue, requirements)
            if step is None:
                continue
            # ranked by the queue's own skills, so a step-0 agent's proficiency is the usual sum
            eligible[agent_id][queue.id] = sum(agent.skills.get(skill, 0) for skill in queue.skills)
            if step:
                steps[agent_id, queue.id] = step
            if queue.policy in _REORDERING:
                reorders.add(agent_id)
    reorders |= {a.id for a in agents.values() if a.phone_exclusive}
    return Eligibility(eligible, steps, reorders, _servable(eligible, agents))


def _holders(agents: Mapping[str, Agent]) -> dict[str, set[str]]:
    # skill -> the agents with any level in it
    holders: dict[str, set[str]] = {}
    for agent in agents.values():
        for skill, level in agent.skills.items():
            if level > 0:
                holders.setdefault(skill, set()).add(agent.id)
    return holders


def _candidates(widest: dict[str, int], holders: dict[str, set[str]], agents: Mapping[str, Agent]) -> set[str]:
    # only agents holding every skill of the widest requirement can qualify: intersect instead of testing all
    needed = [holders.get(skill, set()) for skill, minimum in widest.items() if minimum > 0]
    return set.intersection(*needed) if needed else set(agents)


def _first_step(agent: Agent, queue: Queue, requirements: list[dict[str, int]]) -> int | None:
    # the first bullseye step whose requirement the agent meets, if it is in the queue's group (if it has one)
    if queue.group is not None and queue.group not in agent.groups:
        return None
    return next((i for i, need in enumerate(requirements) if agent.proficiency(need) is not None), None)


def _servable(eligible: dict[str, dict[str, int]], agents: Mapping[str, Agent]) -> set[tuple[str, Channel]]:
    # (queue, channel) pairs some agent, in any presence, may ever serve: skills at some step, group, a slot
    return {
        (queue_id, channel)
        for agent_id, queue_ids in eligible.items()
        for channel, slots in agents[agent_id].capacity.items()
        if slots > 0
        for queue_id in queue_ids
    }
