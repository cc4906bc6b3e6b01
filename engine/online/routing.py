"""How a replica answers under an experiment: the arm each request's user sees (A/B), or one
list drafted from both arms (interleaving), with what to log as its impressions."""

from __future__ import annotations

from dataclasses import dataclass

from recengine.online.experiments import assign, team_draft
from recengine.online.schemas import ExperimentSpec
from recengine.recommender import Recommendations, Recommender, Request

INTERLEAVED = "interleaved"


@dataclass(frozen=True)
class Arms:
    """A running experiment and the recommender of each of its arms on this replica."""

    spec: ExperimentSpec
    recommenders: dict[str, Recommender]

    def model(self, arm: str) -> str:
        bundle = self.recommenders[arm].bundle
        return f"{bundle.name}/{bundle.version}"


@dataclass
class Answer:
    """One request's answer (or error) and who made it: a model and arm, or one per item."""

    items: Recommendations | Exception
    model: str | list[str]
    arm: str | None
    item_arms: list[str] | None = None


def answer(arms: Arms, requests: list[Request], request_ids: list[str]) -> list[Answer]:
    """Each request answered by its user's arm (A/B) or by both arms drafted (interleaving)."""
    if arms.spec.mode == "interleave":
        return _interleaved(arms, requests, request_ids)
    routed: dict[str, list[int]] = {}
    for index, (request, request_id) in enumerate(zip(requests, request_ids)):
        unit = request.user_id or f"request:{request_id}"  # an anonymous visitor: per request
        routed.setdefault(assign(arms.spec, unit), []).append(index)
    answers: list[Answer | None] = [None] * len(requests)
    for arm, members in routed.items():
        found = arms.recommenders[arm].answer_many([requests[i] for i in members])
        for i, items in zip(members, found):
            answers[i] = Answer(items, arms.model(arm), arm)
    return [a for a in answers if a is not None]


def _interleaved(arms: Arms, requests: list[Request], request_ids: list[str]) -> list[Answer]:
    names = [arm.name for arm in arms.spec.arms]
    ranked = {name: arms.recommenders[name].answer_many(requests) for name in names}
    answers = []
    for index, request_id in enumerate(request_ids):
        lists = {name: ranked[name][index] for name in names}
        failed = next((r for r in lists.values() if isinstance(r, Exception)), None)
        if failed is not None:
            answers.append(Answer(failed, arms.model(names[0]), INTERLEAVED))
            continue
        by_id = {name: {r.item_id: r for r in lists[name]} for name in names}  # type: ignore[union-attr]
        drafted = team_draft({name: [r.item_id for r in lists[name]] for name in names},  # type: ignore[union-attr]
                             requests[index].k, request_id)
        first = lists[names[0]]
        assert isinstance(first, Recommendations)
        merged = Recommendations([by_id[team][item] for item, team in zip(drafted.items, drafted.teams)],
                                 fallback=first.fallback, notes=first.notes)
        answers.append(Answer(merged, [arms.model(team) for team in drafted.teams], INTERLEAVED, drafted.teams))
    return answers
