"""What the online-metrics and experiment endpoints answer (``GET /<domain>/online``,
``GET /<domain>/experiment``) and what ``recengine experiment status`` prints.

Every figure is computed from the logged data alone (impressions and events in the store):
an attributed click is an event of a click type whose (user, item) was shown by a request,
named by the event's ``request_id`` or else the latest impression of that item for that user
within the attribution window.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class ArmSpec(BaseModel):
    """One arm of an experiment: a bundle and its share of users (A/B)."""

    name: str = Field(description="The arm's name, e.g. control or candidate.")
    bundle: str = Field(description="The bundle it serves: <name>/<version>.")
    path: str | None = Field(None, description="The bundle's directory on the server (resolved at start).")
    weight: float = Field(description="Share of users routed to it (A/B); both arms rank every request when "
                                      "interleaving.")


class ExperimentSpec(BaseModel):
    """An experiment as started (stored in the store's ``experiments`` table)."""

    id: str
    domain: str
    mode: Literal["ab", "interleave"]
    arms: list[ArmSpec]
    started_at: str
    stopped_at: str | None = None
    winner: str | None = Field(None, description="The arm promoted when it stopped, if any.")
    min_effect: float = Field(description="Smallest relative CTR lift the planned sample size detects.")
    planned_requests_per_arm: int | None = Field(None, description="Requests per arm for 80% power at α = 0.05 to "
                                                                   "detect min_effect (from control's CTR so far).")


class ArmMetrics(BaseModel):
    """Online metrics of one arm (or one model), from its impressions and attributed events."""

    name: str
    model: str | None = None
    users: int
    requests: int = Field(description="Recommendation requests answered (each logs its impressions).")
    impressions: int = Field(description="Items shown, over all requests.")
    clicks: int = Field(description="Attributed clicks (events of the domain's click types on a shown item).")
    conversions: int = Field(description="Attributed conversions (events of the conversion types).")
    ctr: float | None = Field(None, description="Requests with at least one attributed click within the top k, "
                                                "over requests (CTR@k).")
    ctr_low: float | None = Field(None, description="95% interval of ctr (delta method over users).")
    ctr_high: float | None = None
    conversion_rate: float | None = Field(None, description="Requests with an attributed conversion, over requests.")
    mrr: float | None = Field(None, description="Mean over requests of 1 / rank of the first clicked item (0 when "
                                                "none was clicked).")
    coverage: float | None = Field(None, description="Distinct items shown, over the catalogue's items.")


class ABTest(BaseModel):
    """Two-sided test of the CTR difference between the candidate arm and control."""

    control: str
    candidate: str
    difference: float | None = Field(None, description="candidate CTR − control CTR.")
    relative_lift: float | None = None
    low: float | None = Field(None, description="95% interval of the difference.")
    high: float | None = None
    z: float | None = None
    p_value: float | None = None
    significant: bool = Field(description="p < 0.05.")
    planned_requests_per_arm: int | None = None
    reached: bool = Field(description="Both arms have the planned number of requests.")


class InterleavingTest(BaseModel):
    """Team-draft interleaving: which arm's items were clicked, request by request."""

    arms: list[str]
    wins: dict[str, int] = Field(description="Requests whose clicks credited this arm more.")
    ties: int
    credit: float | None = Field(None, description="(wins of the second arm − wins of the first) / requests with "
                                                   "clicks: > 0 favours the second arm (the candidate).")
    user_preference: dict[str, int] = Field(description="Users whose requests credited this arm more.")
    p_value: float | None = Field(None, description="Two-sided sign test over users with a preference.")
    significant: bool


class TimelinePoint(BaseModel):
    minute: str = Field(description="Start of the bucket (UTC, ISO 8601): buckets of 10 s or more, at most 60 "
                                    "per arm over the experiment.")
    arm: str
    requests: int
    clicks: int
    ctr: float | None


class ExperimentReport(BaseModel):
    experiment: ExperimentSpec
    status: Literal["running", "stopped"]
    arms: list[ArmMetrics]
    ab: ABTest | None = None
    interleaving: InterleavingTest | None = None
    timeline: list[TimelinePoint] = Field(default_factory=list, description="Per-arm requests, clicks and CTR per "
                                                                            "time bucket (for the dashboard's chart).")
    verdict: str = Field(description="One sentence: who leads, whether it is significant, whether the planned "
                                     "sample is reached.")


class MinuteCount(BaseModel):
    minute: str
    events: int


class OnlineSummary(BaseModel):
    """The domain's online figures over a recent window (``GET /<domain>/online``)."""

    domain: str
    window_hours: float
    events_per_minute: list[MinuteCount] = Field(description="Events written per minute over the last hour.")
    models: list[ArmMetrics] = Field(description="Online metrics per serving model over the window.")
    experiment: ExperimentReport | None = Field(None, description="The running (or last) experiment.")


class ArmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=32, description="e.g. control, candidate")
    bundle: str = Field(min_length=1, max_length=256, description="<name>/<version> (e.g. news/4) or a name (its "
                                                                  "newest version)")


class ExperimentStart(BaseModel):
    """``POST /<domain>/admin/experiment``: what ``recengine experiment start`` takes."""

    model_config = ConfigDict(extra="forbid", strict=True)

    arms: list[ArmRequest] = Field(min_length=2, max_length=8)
    split: list[Annotated[float, Field(gt=0, le=100)]] | None = Field(
        None, max_length=8, description="Share of users per arm, e.g. [50, 50] (default: even).")
    mode: Literal["ab", "interleave"] = "ab"
    min_effect: float = Field(0.05, gt=0, lt=10, description="Smallest relative CTR lift to plan the sample for.")


class ExperimentStop(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    promote: str | None = Field(None, max_length=32, description="The arm to make the domain's model.")
