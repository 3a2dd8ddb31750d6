"""A small IAM policy evaluator: enough of AWS's evaluation logic to check the stack's own policies.

What it evaluates, as AWS does: an explicit Deny (identity or resource policy) wins; otherwise a request is
allowed when an identity policy Allow matches, or a resource policy Allow names the principal's role ARN
exactly. ``Action``/``NotAction`` (case-insensitive wildcards), ``Resource``/``NotResource`` (case-sensitive
``*``/``?`` wildcards), ``Principal`` (``*``, role or account ARNs; a service principal never matches a role),
and ``Condition`` with the operators below (several values: any matches; the negated operators: none matches;
a missing key makes a positive operator false and a negated one true, ``...IfExists`` makes a missing key true).

What it does not evaluate, and refuses rather than guessing: other condition operators, ``NotPrincipal``,
policy variables (``${aws:username}``). Not modelled at all: AWS managed policies (their contents are not in
the template; the check ignores them), permission boundaries, SCPs, session policies, KMS key policies and grants
(the keys the functions use are the AWS managed ``aws/s3``/``aws/secretsmanager``, whose key policies allow the
account's principals through those services, or a customer managed key the operator names, whose key policy is
theirs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Condition values by key; keys are compared case-insensitively, as IAM does.
Context = Mapping[str, Sequence[str]]


class NotEvaluated(Exception):
    """A policy uses something this evaluator does not model (an operator, NotPrincipal, a policy variable)."""


@dataclass(frozen=True, slots=True)
class Statement:
    """One policy statement, resolved (no intrinsics left)."""

    source: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_action: bool = False
    not_resource: bool = False
    #: None for identity policies; the ``AWS`` principals (or ``*``) of a resource policy statement.
    principals: tuple[str, ...] | None = None
    conditions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, source: str, resource_policy: bool) -> Statement:
        if "NotPrincipal" in raw:
            raise NotEvaluated(f"{source}: NotPrincipal is not evaluated")
        not_action = "NotAction" in raw
        not_resource = "NotResource" in raw
        principals: tuple[str, ...] | None = None
        if resource_policy:
            principals = _principals(raw.get("Principal"), source)
        conditions = []
        for operator, entries in (raw.get("Condition") or {}).items():
            for key, values in entries.items():
                conditions.append((str(operator), str(key).lower(), _strings(values)))
        sid = raw.get("Sid")
        return cls(
            source=f"{source}#{sid}" if sid else source,
            effect=str(raw["Effect"]),
            actions=_strings(raw.get("NotAction" if not_action else "Action")),
            resources=_strings(raw.get("NotResource" if not_resource else "Resource", "*")),
            not_action=not_action,
            not_resource=not_resource,
            principals=principals,
            conditions=tuple(conditions),
        )

    def action_patterns(self, action: str) -> list[str]:
        """The patterns of this statement that match ``action`` (for NotAction: the whole list, or nothing)."""
        matching = [p for p in self.actions if _matches(p, action, case_sensitive=False)]
        if self.not_action:
            return [] if matching else list(self.actions)
        return matching

    def resource_patterns(self, resource: str) -> list[str]:
        matching = [p for p in self.resources if _matches(p, resource, case_sensitive=True)]
        if self.not_resource:
            return [] if matching else list(self.resources)
        return matching

    def applies_to(self, principal_arn: str, *, for_allow: bool) -> bool:
        """Whether a resource policy statement names the principal (identity statements always apply)."""
        if self.principals is None:
            return True
        if "*" in self.principals:
            return True
        if principal_arn in self.principals:
            return True
        # An account in a resource policy delegates to that account's IAM policies: it denies all of them, but
        # allows none of them by itself.
        account = principal_arn.split(":")[4] if principal_arn.count(":") >= 5 else ""
        return not for_allow and any(p in (account, f"arn:aws:iam::{account}:root") for p in self.principals)

    def conditions_hold(self, context: Context) -> bool:
        lowered = {key.lower(): list(values) for key, values in context.items()}
        return all(_condition(op, key, expected, lowered, self.source) for op, key, expected in self.conditions)


@dataclass(frozen=True, slots=True)
class Request:
    """What one AWS call asks IAM for: an action on a resource, with the request's condition keys."""

    action: str
    resource: str
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def context_map(self) -> dict[str, tuple[str, ...]]:
        return dict(self.context)


@dataclass(frozen=True, slots=True)
class Grant:
    """One (action pattern, resource pattern) of an identity policy Allow statement of a principal."""

    principal: str
    source: str
    action: str
    resource: str


@dataclass(slots=True)
class Decision:
    allowed: bool
    denied_by: Statement | None = None
    #: The grants that allowed the request (every matching one: each counts as used).
    grants: list[Grant] = field(default_factory=list)


@dataclass(slots=True)
class Principal:
    """A role the stack creates and the principal (function, state machine) that uses it."""

    name: str
    role_arn: str
    statements: list[Statement]
    managed_policies: list[str]

    def grants(self) -> list[Grant]:
        return [
            Grant(self.name, s.source, action, resource)
            for s in self.statements
            if s.effect == "Allow"
            for action in s.actions
            for resource in s.resources
        ]


def evaluate(principal: Principal, request: Request, resource_policies: Iterable[Statement]) -> Decision:
    """AWS's decision for one request of ``principal`` (see the module docstring for what is modelled)."""
    context = {**request.context_map, "aws:PrincipalArn": (principal.role_arn,)}
    context["aws:PrincipalAccount"] = (principal.role_arn.split(":")[4],)
    grants: list[Grant] = []
    resource_allows = False
    candidates = [(s, False) for s in principal.statements] + [(s, True) for s in resource_policies]
    for statement, is_resource_policy in candidates:
        actions = statement.action_patterns(request.action)
        resources = statement.resource_patterns(request.resource)
        if not actions or not resources:
            continue
        for_allow = statement.effect == "Allow"
        if not statement.applies_to(principal.role_arn, for_allow=for_allow):
            continue
        if not statement.conditions_hold(context):
            continue
        if not for_allow:
            return Decision(False, denied_by=statement)
        if is_resource_policy:
            resource_allows = True
        else:
            grants.extend(Grant(principal.name, statement.source, a, r) for a in actions for r in resources)
    return Decision(bool(grants) or resource_allows, grants=grants)


# ----------------------------------------------------------------------------------------------- matching
def _matches(pattern: str, value: str, *, case_sensitive: bool) -> bool:
    if "${" in pattern:
        raise NotEvaluated(f"policy variables are not evaluated: {pattern}")
    # IAM's wildcards are * and ? only; everything else is literal.
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE
    return re.fullmatch(regex, value, flags) is not None


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value if v is not None)
    return (str(value),)


def _principals(value: Any, source: str) -> tuple[str, ...]:
    if value == "*":
        return ("*",)
    if not isinstance(value, Mapping):
        raise NotEvaluated(f"{source}: Principal {value!r} is not evaluated")
    return _strings(value.get("AWS"))


#: Operator -> (does an actual value match an expected one, is the operator negated).
_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (lambda a, e: a == e, False),
    "StringNotEquals": (lambda a, e: a == e, True),
    "StringEqualsIgnoreCase": (lambda a, e: a.lower() == e.lower(), False),
    "StringLike": (lambda a, e: _matches(e, a, case_sensitive=True), False),
    "StringNotLike": (lambda a, e: _matches(e, a, case_sensitive=True), True),
    "ArnEquals": (lambda a, e: a == e, False),
    "ArnNotEquals": (lambda a, e: a == e, True),
    "ArnLike": (lambda a, e: _matches(e, a, case_sensitive=True), False),
    "ArnNotLike": (lambda a, e: _matches(e, a, case_sensitive=True), True),
    "Bool": (lambda a, e: a.lower() == e.lower(), False),
}


def _condition(operator: str, key: str, expected: tuple[str, ...], context: dict[str, list[str]], source: str) -> bool:
    name = operator.removesuffix("IfExists")
    if name not in _OPERATORS or operator.startswith(("ForAllValues:", "ForAnyValue:")):
        raise NotEvaluated(f"{source}: condition operator {operator} is not evaluated")
    test, negated = _OPERATORS[name]
    actual = context.get(key)
    if actual is None:
        return operator.endswith("IfExists") or negated
    matched = any(test(a, e) for a in actual for e in expected)
    return not matched if negated else matched
