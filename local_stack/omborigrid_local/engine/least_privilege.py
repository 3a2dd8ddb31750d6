"""Least privilege, measured: the recorded calls against the template's policies, both ways.

The policies are read from template.yaml as SAM translated it for the local stack (policy templates expanded,
``DeadLetterQueuePolicy`` and the other generated policies included) and resolved by moto's CloudFormation
(``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If`` and the conditions, with this stack's parameters), so every
ARN is the local stack's real one. Roles are matched to the function or state machine that uses them; bucket,
queue and event bus policies (which moto does not create, so they are read from the translation itself) take
part as resource policies.

Both ways:

- **missing**: a recorded call of a deployed principal that its policies do not allow (or a resource policy
  denies) — the deployed stack would fail where the tests pass;
- **unused**: an identity policy grant (statement x action pattern x resource pattern, AWS managed policies
  aside) that no recorded call used — unless it is listed with the reason the tests cannot reach it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .calls import LOCAL, Call
from .iam import Grant, Principal, Statement, evaluate
from .needs import Where, describe, requests_of

#: Resource types whose policy document takes part, and where it is.
_RESOURCE_POLICIES = {
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::Events::EventBus": "Policy",
}


@dataclass(slots=True)
class PolicySet:
    """The stack's principals (by logical id of the function or state machine) and its resource policies."""

    principals: dict[str, Principal]
    resource_policies: list[Statement]


@dataclass(slots=True)
class Report:
    calls: int = 0
    checked: set[tuple[str, str, str]] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)
    unused: list[Grant] = field(default_factory=list)
    excused: list[tuple[Grant, str]] = field(default_factory=list)
    used: set[Grant] = field(default_factory=set)
    #: Whether unused grants were looked for (``check`` with ``reasons``).
    both_ways: bool = False

    def summary(self) -> str:
        text = (
            f"calls recorded: {self.calls}; (principal, action, resource) pairs checked: {len(self.checked)}; "
            f"missing: {len(self.missing)}"
        )
        if not self.both_ways:
            return text + "; unused grants: not looked for"
        return f"{text}; unused without a reason: {len(self.unused)}; unused with a written reason: {len(self.excused)}"

    def details(self) -> str:
        lines = [self.summary()]
        lines += [f"  MISSING {m}" for m in self.missing]
        lines += [f"  UNUSED {g.principal}: {g.action} on {g.resource} ({g.source})" for g in self.unused]
        return "\n".join(lines)


def policy_set(template: Mapping[str, Any], resolve: Any, active: Any) -> PolicySet:
    """Principals and resource policies of a translated template.

    ``resolve(node)`` resolves intrinsics with the stack's values; ``active(logical_id)`` says whether a
    conditional resource exists with these parameters.
    """
    resources = template["Resources"]
    principals: dict[str, Principal] = {}
    for logical_id, resource in resources.items():
        props = resource.get("Properties", {})
        role_ref = {"AWS::Lambda::Function": "Role", "AWS::StepFunctions::StateMachine": "RoleArn"}.get(
            resource.get("Type", "")
        )
        if role_ref is None or not active(logical_id):
            continue
        role_id = _get_att_target(props.get(role_ref))
        if role_id is None:
            continue
        role = resources[role_id].get("Properties", {})
        statements: list[Statement] = []
        for policy in resolve(role.get("Policies", [])) or []:
            name = f"{role_id}/{policy['PolicyName']}"
            for raw in _statement_list(policy["PolicyDocument"]):
                statements.append(Statement.parse(raw, source=name, resource_policy=False))
        principals[logical_id] = Principal(
            name=logical_id,
            role_arn=str(resolve({"Fn::GetAtt": [role_id, "Arn"]})),
            statements=statements,
            managed_policies=[str(arn) for arn in resolve(role.get("ManagedPolicyArns", [])) or []],
        )
    resource_policies: list[Statement] = []
    for logical_id, resource in resources.items():
        key = _RESOURCE_POLICIES.get(resource.get("Type", ""))
        document = resource.get("Properties", {}).get(key) if key else None
        if document is None or not active(logical_id):
            continue
        for raw in _statement_list(resolve(document)):
            resource_policies.append(Statement.parse(raw, source=logical_id, resource_policy=True))
    return PolicySet(principals, resource_policies)


def check(
    policies: PolicySet, calls: Iterable[Call], where: Where, *, reasons: Mapping[tuple[str, str], str] | None = None
) -> Report:
    """Evaluate every call of a deployed principal; with ``reasons``, also report the grants no call used.

    ``reasons`` maps (principal, action pattern) to why a grant the tests do not use is kept.
    """
    report = Report()
    for call in calls:
        if call.principal == LOCAL:
            continue
        report.calls += 1
        principal = policies.principals.get(call.principal)
        if principal is None:
            report.missing.append(f"{call.label}: no role in the template for {call.principal}")
            continue
        for request in requests_of(call, where):
            report.checked.add((principal.name, request.action, request.resource))
            decision = evaluate(principal, request, policies.resource_policies)
            report.used.update(decision.grants)
            if decision.denied_by is not None:
                report.missing.append(f"{call.label}: {describe(request)} denied by {decision.denied_by.source}")
            elif not decision.allowed:
                report.missing.append(f"{call.label}: {describe(request)} is not allowed")
    if reasons is not None:
        report.both_ways = True
        for principal in policies.principals.values():
            for grant in principal.grants():
                if grant in report.used:
                    continue
                reason = reasons.get((grant.principal, grant.action))
                if reason:
                    report.excused.append((grant, reason))
                else:
                    report.unused.append(grant)
    report.missing = sorted(set(report.missing))
    return report


def _get_att_target(node: Any) -> str | None:
    if isinstance(node, Mapping) and "Fn::GetAtt" in node:
        target = node["Fn::GetAtt"]
        parts = target.split(".", 1) if isinstance(target, str) else list(target)
        return str(parts[0])
    return None


def _statement_list(document: Any) -> list[Mapping[str, Any]]:
    statements = document.get("Statement", []) if isinstance(document, Mapping) else []
    if isinstance(statements, Mapping):
        return [statements]
    return [s for s in statements if isinstance(s, Mapping)]  # a !If ... AWS::NoValue resolves to None
