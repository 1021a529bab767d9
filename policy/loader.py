"""Read a policy document: YAML text -> validated `Policy`, its version and sha256.

Every problem is reported as (dotted path in the document, message), e.g.
`workflows.billing.actions.refund_payment.mode: Input should be 'suggest', 'approve',
'auto' or 'prohibited'`, so that `casegate policy validate` can list them all at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from policy.model import Policy, PolicyConsistencyError
from policy.shape import anchor, model_at
from schemas.events import PolicyPublished
from schemas.names import ACTION_NAME_PATTERN, ACTION_NAME_RULE

# Path given to problems that concern the whole document (syntax, top-level type).
DOCUMENT = "(document)"

# Discriminator tags pydantic puts in error locations of tagged unions; they are not
# keys of the document, so they are dropped from reported paths.
_UNION_TAGS = {"recommender": ("baseline", "llm")}


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A validated policy with the identity it is published under."""

    policy: Policy
    sha256: str  # of the exact text, so any edit (even a comment) is a new document
    version: str  # the document's own `version` field
    text: str


class PolicyInvalid(Exception):
    """The document is not a valid policy; `errors` lists (path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("\n".join(f"{path}: {message}" for path, message in errors))


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain YAML silently keeps the last one,
    which would let a second `billing:` workflow erase the first)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def load_policy_text(text: str) -> LoadedPolicy:
    """Parse and validate a policy document; raise PolicyInvalid listing every problem."""
    try:
        # A SafeLoader subclass: no arbitrary object construction.
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise PolicyInvalid([(DOCUMENT, _yaml_message(exc))]) from exc
    if not isinstance(data, dict):
        raise PolicyInvalid([(DOCUMENT, "a policy must be a YAML mapping")])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyInvalid(_problems(exc)) from exc
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return LoadedPolicy(policy=policy, sha256=sha256, version=policy.version, text=text)


def load_policy_file(path: str | Path) -> LoadedPolicy:
    """Read and validate the policy document at `path` (UTF-8)."""
    return load_policy_text(Path(path).read_text(encoding="utf-8"))


def default_policy_path() -> Path:
    """The demo workload's policy, shipped inside the package."""
    return Path(__file__).with_name("default.yaml")


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return f"YAML syntax error: {problem}"
    # Marks are 0-based; editors count from 1.
    return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for error in exc.errors():
        path = _dotted(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, PolicyConsistencyError):
            # Cross-section problems carry their own paths (the validator sits at the root).
            problems += [(_join(path, sub), message) for sub, message in cause.problems]
        else:
            problems.append((path or DOCUMENT, _message(error)))
    return problems


def _message(error: Any) -> str:
    """Pydantic's message, made to say what is allowed and where to read about it."""
    loc, kind = tuple(error["loc"]), error["type"]
    if kind == "extra_forbidden":
        model = model_at(loc[:-1])
        if model is not None:
            allowed = ", ".join(model.model_fields)
            return (
                f"unknown key (Extra inputs are not permitted); allowed: {allowed} "
                f"(see {anchor(model)})"
            )
    if kind == "missing" and (model := model_at(loc[:-1])) is not None:
        return f"Field required (see {anchor(model)})"
    if kind == "string_pattern_mismatch" and error["ctx"]["pattern"] == ACTION_NAME_PATTERN:
        return f"not an action name: {ACTION_NAME_RULE}"
    message: str = error["msg"].removeprefix("Value error, ")
    return message


def _dotted(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts and item in _UNION_TAGS.get(parts[-1].lstrip("."), ()):
            continue
        else:
            parts.append(f".{item}" if parts else item)
    return "".join(parts)


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix else path


def diff_policies(old: Policy | LoadedPolicy, new: Policy | LoadedPolicy) -> list[str]:
    """Human-readable changes from `old` to `new`, one line each, in document order.

    Paths are the same dotted paths validation uses, e.g.
    `workflows.billing.phase: assisted -> bounded` or `catalog.reship_order: added`.
    """
    before = old.policy if isinstance(old, LoadedPolicy) else old
    after = new.policy if isinstance(new, LoadedPolicy) else new
    changes: list[str] = []
    _diff("", before.model_dump(mode="json"), after.model_dump(mode="json"), changes)
    return changes


def _diff(path: str, old: Any, new: Any, out: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            if key == "name" and old[key] == new.get(key) == path.rpartition(".")[2]:
                continue  # an entry's name equals its key, already part of the path
            at = _join(path, str(key))
            if key not in new:
                out.append(f"{at}: removed")
            elif key not in old:
                out.append(f"{at}: added{_summary(new[key])}")
            else:
                _diff(at, old[key], new[key], out)
    elif isinstance(old, list) and isinstance(new, list) and old != new:
        added = [v for v in new if v not in old]
        removed = [v for v in old if v not in new]
        if added or removed:
            parts = ([f"added {', '.join(map(_show, added))}"] if added else []) + (
                [f"removed {', '.join(map(_show, removed))}"] if removed else []
            )
            out.append(f"{path}: {'; '.join(parts)}")
        else:
            out.append(f"{path}: reordered {_show(old)} -> {_show(new)}")
    elif old != new:
        out.append(f"{path}: {_show(old)} -> {_show(new)}")


def _summary(entry: Any) -> str:
    # An added workflow, action rule or catalog action is worth one telling detail.
    if isinstance(entry, dict):
        for key in ("phase", "mode", "risk"):
            if key in entry:
                return f" ({key} {entry[key]})"
    return f" ({_show(entry)})" if not isinstance(entry, dict) else ""


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class PolicyHistory:
    """The versions read from the `policy` topic in order, and the one in force.

    One rule for every reader (processors, the CLI, the publisher): a version is published
    once. A later record of a version already seen — the same document sent again, or an
    old version re-published — does not change what is in force, so the console and the
    processors never disagree about it. Re-publishing old rules means giving them a new
    version.
    """

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}  # version -> sha256 of its first document
        # Every version that came into force, by version: what decided an earlier event.
        self.versions: dict[str, LoadedPolicy] = {}
        self.latest: LoadedPolicy | None = None

    def refusal(self, version: str, sha256: str) -> str | None:
        """Why a document of `version` would not come into force, or None."""
        first = self.seen.get(version)
        if first is None:
            return None
        same = "the same document" if first == sha256 else f"other content (first {first:.12})"
        return (
            f"republished_version: version {version} was already published ({same}); "
            "a version is published once, give the document a new version"
        )

    def offer(self, version: str, sha256: str, loaded: LoadedPolicy | None = None) -> str | None:
        """Take the next record; returns why it does not come into force, or None."""
        why = self.refusal(version, sha256)
        if why is None:
            self.seen[version] = sha256
            if loaded is not None:
                self.latest = loaded
                self.versions[version] = loaded
        return why

    def admit(self, key: bytes | None, event: PolicyPublished) -> LoadedPolicy:
        """Take the next record of the topic: its policy, now in force; or PolicyInvalid
        saying why it is not (the document does not load, does not match what its event
        says, the record is not keyed by its version, or the version was published)."""
        loaded = load_policy_text(event.document)
        if (loaded.sha256, loaded.version) != (event.sha256, event.version):
            raise PolicyInvalid(
                [
                    (
                        "event",
                        f"document has sha256 {loaded.sha256} and version {loaded.version}; "
                        f"the event says {event.sha256} and {event.version}",
                    )
                ]
            )
        if key != policy_key(loaded.version):
            raise PolicyInvalid(
                [("key", f"record key {key!r}: policy records are keyed by their version")]
            )
        why = self.offer(loaded.version, loaded.sha256, loaded)
        if why is not None:
            raise PolicyInvalid([("version", why)])
        return loaded


def policy_key(version: str) -> bytes:
    """The record key of a policy version: one key per version, so the topic (kept
    forever, never compacted) holds every version ever published under its own key."""
    return version.encode("utf-8")
