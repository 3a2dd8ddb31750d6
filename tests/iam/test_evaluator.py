"""The local engine's IAM evaluator and operation mapping on hand-written policies and calls: the semantics the
least-privilege test relies on (tests/statemachine/test_least_privilege.py)."""

from __future__ import annotations

from typing import Any

import pytest

from omborigrid_local.engine.calls import Call
from omborigrid_local.engine.iam import NotEvaluated, Principal, Request, Statement, evaluate
from omborigrid_local.engine.needs import UnmappedOperation, Where, requests_of

ROLE = "arn:aws:iam::123456789012:role/fn"
BUCKET = "arn:aws:s3:::lake"
WHERE = Where(account="123456789012", region="eu-west-1")


def principal(*statements: dict[str, Any]) -> Principal:
    parsed = [Statement.parse(s, source=f"p#{i}", resource_policy=False) for i, s in enumerate(statements)]
    return Principal("fn", ROLE, parsed, [])


def resource_policy(*statements: dict[str, Any]) -> list[Statement]:
    return [Statement.parse(s, source=f"r#{i}", resource_policy=True) for i, s in enumerate(statements)]


def request(action: str, resource: str, **context: str) -> Request:
    return Request(action, resource, tuple(sorted((k.replace("_", ":", 1), (v,)) for k, v in context.items())))


def test_action_wildcards_are_case_insensitive_and_resources_are_not() -> None:
    fn = principal({"Effect": "Allow", "Action": "s3:get*", "Resource": f"{BUCKET}/data/*"})
    assert evaluate(fn, request("s3:GetObject", f"{BUCKET}/data/a.parquet"), []).allowed
    assert not evaluate(fn, request("s3:GetObject", f"{BUCKET}/DATA/a.parquet"), []).allowed
    assert not evaluate(fn, request("s3:PutObject", f"{BUCKET}/data/a.parquet"), []).allowed


def test_question_mark_matches_one_character_and_brackets_are_literal() -> None:
    fn = principal({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "arn:s:token-??????"})
    assert evaluate(fn, request("secretsmanager:GetSecretValue", "arn:s:token-AbC123"), []).allowed
    assert not evaluate(fn, request("secretsmanager:GetSecretValue", "arn:s:token-AbC12"), []).allowed
    literal = principal({"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET}/[ab]"})
    assert not evaluate(literal, request("s3:GetObject", f"{BUCKET}/a"), []).allowed


def test_an_explicit_deny_in_a_resource_policy_wins_over_an_allow() -> None:
    fn = principal({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    deny = resource_policy(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [BUCKET, f"{BUCKET}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    assert evaluate(fn, request("s3:GetObject", f"{BUCKET}/k", aws_SecureTransport="true"), deny).allowed
    refused = evaluate(fn, request("s3:GetObject", f"{BUCKET}/k", aws_SecureTransport="false"), deny)
    assert (refused.allowed, refused.denied_by.source if refused.denied_by else None) == (False, "r#0")


def test_conditions_missing_keys_and_negated_operators() -> None:
    owner = {"StringEquals": {"s3:ResourceAccount": "123456789012"}}
    fn = principal({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*", "Condition": owner})
    assert evaluate(fn, request("s3:PutObject", f"{BUCKET}/k", s3_ResourceAccount="123456789012"), []).allowed
    assert not evaluate(fn, request("s3:PutObject", f"{BUCKET}/k", s3_ResourceAccount="999999999999"), []).allowed
    assert not evaluate(fn, request("s3:PutObject", f"{BUCKET}/k"), []).allowed  # key missing: positive is false
    others = resource_policy(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "events:PutEvents",
            "Resource": "*",
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": ["arn:aws:iam::123456789012:role/other"]}},
        }
    )
    put = principal({"Effect": "Allow", "Action": "events:PutEvents", "Resource": "*"})
    assert not evaluate(put, request("events:PutEvents", "arn:bus"), others).allowed  # the role is not listed


def test_not_action_and_an_allow_of_the_account_in_a_resource_policy() -> None:
    fn = principal({"Effect": "Allow", "NotAction": "s3:Delete*", "Resource": "*"})
    assert evaluate(fn, request("s3:PutObject", f"{BUCKET}/k"), []).allowed
    assert not evaluate(fn, request("s3:DeleteObject", f"{BUCKET}/k"), []).allowed
    nobody = principal()
    account = resource_policy(
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "*", "Resource": "*"}
    )
    assert not evaluate(nobody, request("s3:GetObject", f"{BUCKET}/k"), account).allowed  # delegates to IAM
    exact = resource_policy({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "*", "Resource": "*"})
    assert evaluate(nobody, request("s3:GetObject", f"{BUCKET}/k"), exact).allowed


def test_what_is_not_evaluated_is_refused() -> None:
    with pytest.raises(NotEvaluated):
        Statement.parse(
            {"Effect": "Deny", "NotPrincipal": {"AWS": ROLE}, "Action": "*"}, source="x", resource_policy=True
        )
    fn = principal(
        {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"DateGreaterThan": {"aws:CurrentTime": "x"}}}
    )
    with pytest.raises(NotEvaluated):
        evaluate(fn, request("s3:GetObject", f"{BUCKET}/k"), [])


def call(service: str, operation: str, params: dict[str, Any], **outcome: Any) -> Call:
    return Call("fn", service, operation, params, secure_transport=True, **outcome)


def test_a_head_that_404s_needs_list_bucket() -> None:
    found = requests_of(call("s3", "HeadObject", {"Bucket": "lake", "Key": "k"}, status=200), WHERE)
    missing = requests_of(call("s3", "HeadObject", {"Bucket": "lake", "Key": "k"}, status=404), WHERE)
    assert [(r.action, r.resource) for r in found] == [("s3:GetObject", f"{BUCKET}/k")]
    assert [(r.action, r.resource) for r in missing] == [("s3:GetObject", f"{BUCKET}/k"), ("s3:ListBucket", BUCKET)]


def test_a_multipart_upload_under_a_customer_key_needs_the_key_through_s3() -> None:
    key = "arn:aws:kms:eu-west-1:123456789012:key/k1"
    response = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key}
    needs = requests_of(call("s3", "UploadPart", {"Bucket": "lake", "Key": "k"}, status=200, response=response), WHERE)
    assert [(r.action, r.resource) for r in needs] == [
        ("s3:PutObject", f"{BUCKET}/k"),
        ("kms:GenerateDataKey", key),
        ("kms:Decrypt", key),
    ]
    assert needs[1].context_map["kms:ViaService"] == ("s3.eu-west-1.amazonaws.com",)
    managed = requests_of(
        call("s3", "PutObject", {"Bucket": "lake", "Key": "k"}, response={"ServerSideEncryption": "aws:kms"}), WHERE
    )
    assert [r.action for r in managed] == ["s3:PutObject"]  # the AWS managed key: no grant needed


def test_a_transaction_needs_each_items_action_and_an_index_query_the_index() -> None:
    items = [{"Update": {"TableName": "ledger"}}, {"ConditionCheck": {"TableName": "ledger"}}]
    table = "arn:aws:dynamodb:eu-west-1:123456789012:table/ledger"
    needs = requests_of(call("dynamodb", "TransactWriteItems", {"TransactItems": items}), WHERE)
    assert [(r.action, r.resource) for r in needs] == [
        ("dynamodb:UpdateItem", table),
        ("dynamodb:ConditionCheckItem", table),
    ]
    query = requests_of(call("dynamodb", "Query", {"TableName": "ledger", "IndexName": "byState"}), WHERE)
    assert [(r.action, r.resource) for r in query] == [("dynamodb:Query", f"{table}/index/byState")]


def test_an_operation_without_a_mapping_fails_loudly() -> None:
    with pytest.raises(UnmappedOperation):
        requests_of(call("s3", "PutBucketPolicy", {"Bucket": "lake"}), WHERE)
    with pytest.raises(UnmappedOperation):
        requests_of(call("glue", "GetTable", {}), WHERE)


def test_a_conditional_delete_on_an_etag_also_needs_get_object() -> None:
    key = {"Bucket": "lake", "Key": "k"}
    plain = requests_of(call("s3", "DeleteObject", key, status=204), WHERE)
    on_etag = requests_of(call("s3", "DeleteObject", {**key, "IfMatch": '"abc"'}, status=204), WHERE)

    assert [r.action for r in plain] == ["s3:DeleteObject"]
    assert [r.action for r in on_etag] == ["s3:DeleteObject", "s3:GetObject"]
