"""The demo workload: a synthetic, deterministic support-desk history and live stream (pure).

`generate` yields upstream events (the `cases` topic) in time order. Every case gets its
own `random.Random` seeded from (seed, case index), and the arrival clock another, so a
case's content never depends on how many cases are asked for or on the pace: the first
N cases of `generate(s, 2N, ...)` are those of `generate(s, N, ...)`, and `rate_per_s`
only compresses the clock. No I/O here; files and Kafka live in `cli.demo_cmd`.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from demo.text import compose, pick
from schemas.events import (
    ActionSpec,
    CaseOpened,
    CaseReopened,
    CaseResolved,
    CaseUpdated,
    Event,
    Scalar,
)

# Fixed so the demo's event ids, and so the shipped example files, never change.
DEMO_NAMESPACE = uuid.UUID("3b0f6c52-8d1e-4a7b-9f25-61c4d0e8a913")
# The realistic clock of files written with --out (a Monday morning).
DEMO_START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class IssueClass:
    queue: str
    team: str
    weight: float  # share of cases
    resolve_median_s: float  # typical open -> resolved delay on the realistic clock
    priorities: Mapping[str, float]


CLASSES: dict[str, IssueClass] = {
    "password_reset": IssueClass(
        "identity", "access", 0.19, 1_800, {"low": 1, "normal": 5, "high": 3, "urgent": 1}
    ),
    "mfa_issue": IssueClass(
        "identity", "access", 0.11, 3_600, {"low": 1, "normal": 4, "high": 4, "urgent": 1}
    ),
    "double_charge": IssueClass(
        "billing", "finance", 0.11, 4 * 3_600, {"low": 0, "normal": 4, "high": 5, "urgent": 1}
    ),
    "refund_request": IssueClass(
        "billing", "finance", 0.15, 8 * 3_600, {"low": 2, "normal": 6, "high": 2, "urgent": 0}
    ),
    "plan_change": IssueClass(
        "billing", "finance", 0.11, 3 * 3_600, {"low": 4, "normal": 5, "high": 1, "urgent": 0}
    ),
    "delivery_delay": IssueClass(
        "shipping", "logistics", 0.20, 20 * 3_600, {"low": 1, "normal": 5, "high": 3, "urgent": 1}
    ),
    "address_change": IssueClass(
        "shipping", "logistics", 0.13, 2 * 3_600, {"low": 1, "normal": 5, "high": 3, "urgent": 1}
    ),
}
SOURCES: dict[str, dict[str, float]] = {  # by queue: which upstream system opens them
    "identity": {"helpdesk": 0.5, "mobile": 0.35, "webshop": 0.15},
    "billing": {"helpdesk": 0.4, "webshop": 0.45, "mobile": 0.15},
    "shipping": {"webshop": 0.6, "helpdesk": 0.25, "mobile": 0.15},
}
CHANNELS: dict[str, dict[str, float]] = {  # by source: how customers reach it
    "helpdesk": {"email": 0.4, "phone": 0.3, "web": 0.2, "chat": 0.1},
    "webshop": {"web": 0.6, "chat": 0.3, "email": 0.1},
    "mobile": {"chat": 0.5, "web": 0.3, "phone": 0.2},
}
AGENTS = {
    "access": ("agent.amara", "agent.bruno", "agent.chen", "agent.dana"),
    "finance": ("agent.emil", "agent.farah", "supervisor.gita"),
    "logistics": ("agent.hugo", "agent.ines", "agent.jonas", "agent.kemal"),
}

# Rates (per case) of the lifecycle's optional steps.
UPSTREAM_CLASS_RATE = 0.40  # upstream names the (right) class when opening
CORRECTION_RATE = 0.05  # upstream opens with a wrong sibling class, then corrects it
UPDATE_RATE = 0.25  # a priority change or a note while the case is open
UNRESOLVED_RATE = 0.02  # never resolved in the generated span
NOISE_RATE = 0.08  # the human did something other than the usual for the class
REOPEN_RATE = 0.018  # after a usual resolution
REOPEN_RATE_AFTER_NOISE = 0.15  # unusual resolutions come back more often
RERESOLVE_RATE = 0.8
# Realistic pace: a case every two minutes on average; with the rates above a case
# yields about this many events, which turns `rate_per_s` into a clock compression.
MEAN_ARRIVAL_S = 120.0
EVENTS_PER_CASE = 1 + CORRECTION_RATE + UPDATE_RATE + (1 - UNRESOLVED_RATE) * 1.03
MAX_DELAY_S = 5 * 86_400.0
CUSTOMER_POOL = 2_000  # fixed, so returning customers do not depend on `cases`

FIRST = (
    "Ann",
    "Bo",
    "Carla",
    "Dev",
    "Elif",
    "Femi",
    "Grace",
    "Hiro",
    "Ivan",
    "Jana",
    "Kofi",
    "Lena",
    "Mateo",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoe",
)
LAST = (
    "Lee",
    "Chen",
    "Diaz",
    "Okafor",
    "Novak",
    "Silva",
    "Kowalski",
    "Haddad",
    "Ito",
    "Larsen",
    "Murphy",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Varga",
    "Weber",
    "Yilmaz",
)
AREA = ("212", "312", "415", "503", "617", "702", "808")
IDENTITY_PRODUCTS = ("customer portal", "mobile app", "desktop app")
SHOP_PRODUCTS = (
    "wireless headphones",
    "coffee grinder",
    "running shoes",
    "desk lamp",
    "phone case",
    "backpack",
    "blender",
    "yoga mat",
    "smart watch",
    "kettle",
    "office chair",
    "rain jacket",
)
PLANS = {"basic": 9.99, "pro": 29.99, "enterprise": 199.0}
CARRIERS = ("ParcelNow", "QuickShip", "PostExpress")
CITIES = ("Springfield", "Riverton", "Lakeside", "Fairview", "Brookfield")
STREETS = ("Main Street", "Oak Avenue", "Harbour Road", "Mill Lane", "Station Square")
CODES = {
    "reset_password": "credentials_reset",
    "resend_mfa_enrollment": "mfa_reenrolled",
    "refund_payment": "refunded",
    "change_plan": "plan_changed",
    "reship_order": "reshipped",
    "update_address": "address_updated",
    "escalate_to_specialist": "escalated",
}


def generate(seed: int, cases: int, start: datetime, rate_per_s: float | None) -> Iterator[Event]:
    """`cases` synthetic cases' upstream events, in time order, the first opening at `start`.

    `rate_per_s=None` keeps the realistic clock (a case every ~2 minutes, resolutions
    after minutes to days); a rate compresses it so the stream averages about that many
    events per second of event time. Same arguments, same events.
    """
    if cases < 0:
        raise ValueError(f"cases must be >= 0, got {cases}")
    if rate_per_s is not None and not rate_per_s > 0:
        raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
    scale = 1.0 if rate_per_s is None else EVENTS_PER_CASE / MEAN_ARRIVAL_S / rate_per_s
    start = _ms(start)
    clock = random.Random(f"casegate-demo:{seed}:clock")
    # (ms after start, push order, event class, fields): push order breaks ties, so a
    # case's own events keep their lifecycle order even when compression merges them.
    pending: list[tuple[int, int, type[Event], dict[str, Any]]] = []
    order = itertools.count()
    arrival = 0.0
    for index in range(cases):
        if index:
            arrival += clock.expovariate(1 / MEAN_ARRIVAL_S)
        opened_ms = round(arrival * scale * 1000)
        # Nothing later can precede what is due by this case's opening: release it.
        while pending and pending[0][0] <= opened_ms:
            yield _build(start, heapq.heappop(pending))
        for offset_s, cls, fields in _lifecycle(seed, index):
            at_ms = round((arrival + offset_s) * scale * 1000)
            heapq.heappush(pending, (at_ms, next(order), cls, fields))
    while pending:
        yield _build(start, heapq.heappop(pending))


def split_history(
    events: Iterable[Event], history_fraction: float
) -> tuple[list[Event], list[Event]]:
    """(history, live): the first `history_fraction` of cases, by opening, with all their
    events, then the rest. Splitting by case keeps each case whole on one side, which an
    evaluation needs (the evaluated cases must be opened in the evaluated file)."""
    if not 0.0 <= history_fraction <= 1.0:
        raise ValueError(f"history_fraction must be within [0, 1], got {history_fraction}")
    events = list(events)
    opened = [e.case_id for e in events if isinstance(e, CaseOpened)]
    past = set(opened[: round(len(opened) * history_fraction)])
    return ([e for e in events if e.case_id in past], [e for e in events if e.case_id not in past])


def shifted(events: Iterable[Event], delta: timedelta) -> list[Event]:
    """The same events, each `delta` later (a whole-stream move keeps every gap)."""
    return [replace(e, occurred_at=e.occurred_at + delta) for e in events]


def history_before(seed: int, cases: int, history_fraction: float, now: datetime) -> list[Event]:
    """The history part on the realistic clock, moved so its last event is a minute
    before `now` (what a broker should already hold when the live part starts)."""
    history, _ = split_history(generate(seed, cases, now, None), history_fraction)
    if not history:
        return []
    last = max(e.occurred_at for e in history)
    return shifted(history, _ms(now) - timedelta(minutes=1) - last)


def live_from(
    seed: int, cases: int, history_fraction: float, now: datetime, rate_per_s: float
) -> list[Event]:
    """The live part in its generated order, event i at `now` + i / `rate_per_s`.

    Evenly paced on purpose: published at `rate_per_s`, every event happens as it is
    sent, and the stream never idles for minutes on a long-tailed resolution (which a
    merely compressed clock would). Each case keeps its lifecycle order.
    """
    _, live = split_history(generate(seed, cases, now, rate_per_s), history_fraction)
    start = _ms(now)
    return [
        replace(e, occurred_at=_ms(start + timedelta(seconds=i / rate_per_s)))
        for i, e in enumerate(live)
    ]


def release_schedule(events: Iterable[Event], rate_per_s: float) -> list[float]:
    """Seconds after the first event at which each may be published: not before it
    happens, and never more than `rate_per_s` per second (the i-th waits i / rate)."""
    events = list(events)
    if not events:
        return []
    first = events[0].occurred_at
    return [
        max(i / rate_per_s, (e.occurred_at - first).total_seconds()) for i, e in enumerate(events)
    ]


# --- one case ---------------------------------------------------------------------------


def _ms(moment: datetime) -> datetime:
    # Avro keeps milliseconds; truncating up front makes every timestamp round-trip.
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _build(start: datetime, item: tuple[int, int, type[Event], dict[str, Any]]) -> Event:
    at_ms, _, cls, fields = item
    return cls(occurred_at=start + timedelta(milliseconds=at_ms), **fields)


def _lifecycle(seed: int, index: int) -> list[tuple[float, type[Event], dict[str, Any]]]:
    """Case `index`'s events as (seconds after its opening, class, fields), in order."""
    rng = random.Random(f"casegate-demo:{seed}:case:{index}")
    # The seed is part of the id: two demo runs with different seeds on the same topics
    # must not collide (intake would refuse the second opening of "case-000001").
    case_id = f"case-{seed}-{index:06d}"

    def ident(kind: str) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid5(DEMO_NAMESPACE, f"{seed}:{case_id}:{kind}")),
            "case_id": case_id,
        }

    true_class = pick(rng, {k: c.weight for k, c in CLASSES.items()})
    spec = CLASSES[true_class]
    source = pick(rng, SOURCES[spec.queue])
    channel = pick(rng, CHANNELS[source])
    customer = _customer(seed, rng.randrange(CUSTOMER_POOL))
    context, attributes = _context(rng, true_class, customer)
    subject, description, _ = compose(rng, true_class, context, channel)
    corrected = rng.random() < CORRECTION_RATE
    if corrected:
        siblings = [k for k, c in CLASSES.items() if c.queue == spec.queue and k != true_class]
        upstream_class: str | None = rng.choice(siblings)
    else:
        upstream_class = true_class if rng.random() < UPSTREAM_CLASS_RATE else None
    events: list[tuple[float, type[Event], dict[str, Any]]] = [
        (
            0.0,
            CaseOpened,
            {
                **ident("opened"),
                "source": source,
                "channel": channel,
                "queue": spec.queue,
                "team": spec.team,
                "issue_class": upstream_class,
                "subject": subject,
                "description": description,
                "priority": pick(rng, spec.priorities),
                "customer": customer,
                "attributes": attributes,
            },
        )
    ]
    resolve_s = _delay(rng, spec.resolve_median_s)
    if corrected:
        events.append(
            (
                resolve_s * rng.uniform(0.05, 0.3),
                CaseUpdated,
                {
                    **ident("corrected"),
                    "actor": f"triage.{source}",
                    "changes": {"issue_class": true_class},
                    "note": "Category corrected after triage.",
                },
            )
        )
    if rng.random() < UPDATE_RATE:
        events.append(
            (
                resolve_s * rng.uniform(0.1, 0.9),
                CaseUpdated,
                {**ident("updated"), **_update(rng, spec.team, customer)},
            )
        )
    if rng.random() >= UNRESOLVED_RATE:
        actions, noisy = _actions_taken(rng, true_class, context, allow_noise=True)
        events.append(
            (
                resolve_s,
                CaseResolved,
                {**ident("resolved"), **_resolution(rng, spec, true_class, actions)},
            )
        )
        if rng.random() < (REOPEN_RATE_AFTER_NOISE if noisy else REOPEN_RATE):
            reopen_s = resolve_s + _delay(rng, 3 * 3_600)
            events.append(
                (
                    reopen_s,
                    CaseReopened,
                    {
                        **ident("reopened"),
                        "reason": rng.choice(
                            (
                                "Customer replied that the problem persists.",
                                "The fix did not work for the customer.",
                                "Customer disputes the resolution.",
                            )
                        ),
                    },
                )
            )
            if rng.random() < RERESOLVE_RATE:
                again, _ = _actions_taken(rng, true_class, context, allow_noise=False)
                events.append(
                    (
                        reopen_s + _delay(rng, spec.resolve_median_s / 2),
                        CaseResolved,
                        {**ident("resolved-again"), **_resolution(rng, spec, true_class, again)},
                    )
                )
    events.sort(key=lambda item: item[0])  # stable: equal offsets keep lifecycle order
    return events


def _delay(rng: random.Random, median_s: float) -> float:
    # Log-normal: most cases near the median, a long tail of slow ones (capped).
    return min(MAX_DELAY_S, rng.lognormvariate(math.log(median_s), 0.7))


def _customer(seed: int, number: int) -> dict[str, str]:
    """Customer `number` of the pool: fake, but shaped like real personal data (names,
    emails on reserved example domains, phones in the 555-01xx fiction range)."""
    rng = random.Random(f"casegate-demo:{seed}:customer:{number}")
    first, last = rng.choice(FIRST), rng.choice(LAST)
    mailbox = f"{first}.{last}{rng.randint(1, 99)}".lower()
    customer = {
        "id": f"cu-{number:05d}",
        "name": f"{first} {last}",
        "email": f"{mailbox}@example.{rng.choice(('com', 'net', 'org'))}",
        "tier": pick(rng, {"standard": 6, "silver": 2, "gold": 1.5, "platinum": 0.5}),
    }
    if rng.random() < 0.8:
        customer["phone"] = f"+1 {rng.choice(AREA)} 555 01{rng.randint(0, 99):02d}"
    return customer


def _context(
    rng: random.Random, issue_class: str, customer: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Scalar]]:
    """Text slots for the wording and the case's `attributes` map."""
    queue = CLASSES[issue_class].queue
    ctx: dict[str, Any] = {
        "order_id": f"ORD-{rng.randint(100_000, 999_999)}",
        "account_id": f"ACC-{rng.randint(10_000, 99_999)}",
        "card4": f"{rng.randint(1000, 9999)}",
        "postal_code": f"{rng.randint(10_000, 99_999)}",
        "street": f"{rng.randint(1, 220)} {rng.choice(STREETS)}",
        "city": rng.choice(CITIES),
        "carrier": rng.choice(CARRIERS),
        "email": customer["email"],
        "phone": customer.get("phone", customer["email"]),
    }
    plan_from, plan_to = rng.sample(list(PLANS), 2)
    ctx.update(plan_from=plan_from.capitalize(), plan_to=plan_to.capitalize(), plan=plan_to)
    subscription = issue_class == "plan_change" or (
        issue_class == "double_charge" and rng.random() < 0.3
    )
    if queue == "identity":
        ctx["product"] = rng.choice(IDENTITY_PRODUCTS)
    elif subscription:
        ctx["product"] = f"{plan_from.capitalize()} subscription"
    else:
        ctx["product"] = rng.choice(SHOP_PRODUCTS)
    if subscription:
        amount = PLANS[plan_from]
    elif issue_class == "refund_request" and rng.random() < 0.25:
        amount = round(rng.uniform(200.5, 480.0), 2)  # above the workflow's refund bound
    else:
        amount = round(rng.uniform(8.0, 195.0), 2)
    ctx["amount"] = f"${amount:.2f}"
    ctx["amount_value"] = amount
    attributes: dict[str, Scalar] = {"product": ctx["product"]}
    if queue == "identity":
        attributes["account_id"] = ctx["account_id"]
    elif issue_class == "plan_change":
        attributes.update(current_plan=plan_from, amount=amount, seats=rng.randint(2, 60))
    elif queue == "billing":
        attributes.update(order_id=ctx["order_id"], amount=amount, currency="USD")
    else:
        attributes.update(order_id=ctx["order_id"], carrier=ctx["carrier"])
        if issue_class == "address_change":
            ctx["old_postal_code"] = f"{rng.randint(10_000, 99_999)}"
            attributes["postal_code"] = ctx["old_postal_code"]
    return ctx, attributes


def _actions_taken(
    rng: random.Random, issue_class: str, ctx: Mapping[str, Any], *, allow_noise: bool
) -> tuple[tuple[ActionSpec, ...], bool]:
    """What the human did, and whether it was unusual for the class (noise)."""
    team = CLASSES[issue_class].team
    if allow_noise and rng.random() < NOISE_RATE:
        if rng.random() < 0.5:
            return (), True  # nothing to do after all (customer fixed it, duplicate case)
        other = {
            "password_reset": _action("resend_mfa_enrollment", factor=rng.choice(("totp", "sms"))),
            "mfa_issue": _action("reset_password", method="email_link"),
            "address_change": _action("reship_order", order_id=ctx["order_id"]),
            "delivery_delay": _action(
                "update_address", order_id=ctx["order_id"], postal_code=ctx["postal_code"]
            ),
        }.get(issue_class, _action("escalate_to_specialist", team=team))
        return (other,), True
    if issue_class == "password_reset":
        params: dict[str, Scalar] = {"method": pick(rng, {"email_link": 7, "sms_code": 3})}
        if rng.random() < 0.2:
            params["revoke_sessions"] = True
        return (ActionSpec(name="reset_password", params=params),), False
    if issue_class == "mfa_issue":
        factor = pick(rng, {"totp": 5, "sms": 3, "email": 2})
        return (_action("resend_mfa_enrollment", factor=factor),), False
    if issue_class in ("double_charge", "refund_request"):
        if ctx["amount_value"] > 200:  # over the billing workflow's bound: a specialist's
            return (_action("escalate_to_specialist", team="finance"),), False
        return (
            _action("refund_payment", amount=ctx["amount_value"], order_id=ctx["order_id"]),
        ), False
    if issue_class == "plan_change":
        return (_action("change_plan", plan=ctx["plan"]),), False
    if issue_class == "delivery_delay":
        if rng.random() < 0.25:
            return (_action("escalate_to_specialist", team="logistics"),), False
        return (
            _action("reship_order", order_id=ctx["order_id"], expedite=rng.random() < 0.3),
        ), False
    return (
        _action("update_address", order_id=ctx["order_id"], postal_code=ctx["postal_code"]),
    ), False


def _action(name: str, **params: Scalar) -> ActionSpec:
    return ActionSpec(name=name, params=params)


def _resolution(
    rng: random.Random, spec: IssueClass, issue_class: str, actions: tuple[ActionSpec, ...]
) -> dict[str, Any]:
    code = (
        CODES[actions[0].name]
        if actions
        else rng.choice(("no_action_needed", "customer_resolved", "duplicate"))
    )
    return {
        "resolved_by": rng.choice(AGENTS[spec.team]),
        "resolution_code": code,
        "category": issue_class,
        "actions_taken": actions,
    }


def _update(rng: random.Random, team: str, customer: Mapping[str, str]) -> dict[str, Any]:
    """A routine CaseUpdated: a priority change or a note (notes may hold personal data)."""
    actor = rng.choice(AGENTS[team])
    if rng.random() < 0.5:
        priority = rng.choice(("high", "urgent", "normal"))
        return {
            "actor": actor,
            "changes": {"priority": priority},
            "note": rng.choice((None, "Customer chased twice.", "Re-prioritised.")),
        }
    note = rng.choice(
        (
            "Asked the customer for a screenshot.",
            "Customer confirmed the details by email.",
            f"Called back, no answer; left a voicemail for {customer['name']}.",
            f"Customer asks to be contacted at {customer['email']}.",
            "Waiting for the customer's reply.",
        )
    )
    return {"actor": actor, "changes": {}, "note": note}
