"""template.yaml → a CloudFormation template moto can create, translated offline with ``samtranslator``.

Nothing here talks to AWS: the SAM transform runs in-process (the managed-policy map is empty, so policy
templates expand but AWS managed policy names are not resolved), local code folders become ``s3://`` zips the
engine uploads to a moto bucket, and the state machine's ``DefinitionUri`` file is inlined as ``Definition``.
What moto's CloudFormation cannot model (for example ``AWS::Scheduler::Schedule``) is removed before
``create_stack`` and reported, so the engine can stand in for it (see ``LocalStack.deliver_scheduled``).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_LAYER = "AWS::Serverless::LayerVersion"
SERVERLESS_STATE_MACHINE = "AWS::Serverless::StateMachine"

#: Folders and files never packed into a code zip (caches, bytecode).
_SKIP_NAMES = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


@dataclass(frozen=True, slots=True)
class FunctionSource:
    """Where a function's code lives on disk and how Lambda would call it."""

    logical_id: str
    code_dir: Path
    handler: str
    timeout: int
    memory_mb: int
    layer_dirs: tuple[Path, ...]

    @property
    def module_file(self) -> Path:
        """``app.lambda_handler`` → ``<code_dir>/app.py``."""
        module, _, _ = self.handler.rpartition(".")
        return self.code_dir / (module.replace(".", "/") + ".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rpartition(".")[2]


@dataclass(slots=True)
class TranslatedTemplate:
    """The CloudFormation template to create, and what the engine needs beside it."""

    template: dict[str, Any]
    #: S3 key in the code bucket -> local folder to zip.
    code_zips: dict[str, Path]
    #: Logical id -> source of each AWS::Lambda::Function.
    functions: dict[str, FunctionSource]
    #: Logical ids of the state machines.
    state_machines: list[str]
    #: (logical id, type) of resources removed because moto's CloudFormation cannot create them.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: The SAM template as written (after parsing), for reading event sources such as ScheduleV2 inputs.
    sam: dict[str, Any] = field(default_factory=dict)
    #: The translation before anything was removed: the policies moto does not create (bucket, queue and bus
    #: policies) are read from here by the least-privilege check.
    full: dict[str, Any] = field(default_factory=dict)


def load_sam_template(path: Path) -> dict[str, Any]:
    """Parse template.yaml, short-form intrinsics (``!Ref``, ``!GetAtt``...) included."""
    from samtranslator.yaml_helper import yaml_parse

    parsed: dict[str, Any] = yaml_parse(path.read_text(encoding="utf-8"))
    return parsed


def translate(template_path: Path, *, parameters: dict[str, str], region: str, code_bucket: str) -> TranslatedTemplate:
    """Translate the SAM template offline; code folders become keys in ``code_bucket``."""
    import boto3
    from samtranslator.metrics.metrics import DummyMetricsPublisher, Metrics
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    root = template_path.parent
    sam = load_sam_template(template_path)
    work = copy.deepcopy(sam)
    code_zips: dict[str, Path] = {}
    global_code_uri = work.get("Globals", {}).get("Function", {}).get("CodeUri")

    for logical_id, resource in work.get("Resources", {}).items():
        kind = resource.get("Type")
        props = resource.setdefault("Properties", {})
        if kind == SERVERLESS_FUNCTION:
            code_uri = props.get("CodeUri", global_code_uri)
            if not isinstance(code_uri, str):
                raise ValueError(f"{logical_id}: the local engine needs CodeUri to be a local folder, got {code_uri!r}")
            key = f"code/{logical_id}.zip"
            code_zips[key] = (root / code_uri).resolve()
            props["CodeUri"] = f"s3://{code_bucket}/{key}"
        elif kind == SERVERLESS_LAYER:
            content_uri = props.get("ContentUri")
            if not isinstance(content_uri, str):
                raise ValueError(f"{logical_id}: the local engine needs ContentUri to be a local folder")
            key = f"layers/{logical_id}.zip"
            code_zips[key] = (root / content_uri).resolve()
            props["ContentUri"] = f"s3://{code_bucket}/{key}"
        elif kind == SERVERLESS_STATE_MACHINE and isinstance(props.get("DefinitionUri"), str):
            definition_path = root / props.pop("DefinitionUri")
            props["Definition"] = json.loads(definition_path.read_text(encoding="utf-8"))

    metrics = Metrics(metrics_publisher=DummyMetricsPublisher())  # samtranslator's usage metrics go nowhere
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=region), metrics=metrics)
    translated: dict[str, Any] = translator.translate(
        work, parameter_values=dict(parameters), get_managed_policy_map=lambda: {}
    )
    metrics.publish()

    full = copy.deepcopy(translated)
    skipped = _strip_unsupported(translated)
    functions = _function_sources(translated, code_zips)
    state_machines = [
        name for name, r in translated["Resources"].items() if r.get("Type") == "AWS::StepFunctions::StateMachine"
    ]
    return TranslatedTemplate(
        template=translated,
        code_zips=code_zips,
        functions=functions,
        state_machines=state_machines,
        skipped=skipped,
        sam=sam,
        full=full,
    )


def _strip_unsupported(template: dict[str, Any]) -> list[tuple[str, str]]:
    """Remove resources moto's CloudFormation has no model for; return what was removed.

    moto would skip them with a warning each, and then fail the whole stack on the first ``Fn::GetAtt`` that
    names one (a dashboard listing alarms, a Glue table naming its database). So they are removed up front, and
    every reference to them in what remains becomes a placeholder string (see :func:`_placeholder`). None of
    them matters to what runs locally: policies, alarms, dashboards, catalogs and the schedule (which the
    engine stands in for).
    """
    from moto.cloudformation.parsing import get_model_map

    known = set(get_model_map())
    resources = template.get("Resources", {})
    removed = [
        (name, str(resource.get("Type", "")))
        for name, resource in resources.items()
        if resource.get("Type", "") not in known and not str(resource.get("Type", "")).startswith("Custom::")
    ]
    names = {name for name, _ in removed}
    for name in names:
        del resources[name]
    for resource in resources.values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str) and depends in names:
            del resource["DependsOn"]
        elif isinstance(depends, list):
            resource["DependsOn"] = [d for d in depends if d not in names]
    for section in ("Resources", "Outputs"):
        if section in template:
            template[section] = _replace_references(template[section], names)
    return removed


def _placeholder(name: str, attribute: str | None = None) -> str:
    """What a reference to a resource that was not created resolves to locally."""
    if attribute is None:
        return f"not-created-locally-{name}"
    if attribute.endswith("Arn"):
        return f"arn:aws:local:::not-created-locally/{name}"
    return f"not-created-locally-{name}-{attribute}"


def _replace_references(node: Any, names: set[str]) -> Any:
    if isinstance(node, list):
        return [_replace_references(value, names) for value in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ref = node.get("Ref")
        if isinstance(ref, str) and ref in names:
            return _placeholder(ref)
        get_att = node.get("Fn::GetAtt")
        if isinstance(get_att, str):
            get_att = get_att.split(".", 1)
        if isinstance(get_att, list) and len(get_att) == 2 and get_att[0] in names:
            return _placeholder(str(get_att[0]), str(get_att[1]))
        if "Fn::Sub" in node:
            sub = node["Fn::Sub"]
            if isinstance(sub, str):
                return {"Fn::Sub": _replace_in_sub(sub, names)}
            if isinstance(sub, list) and len(sub) == 2:
                return {"Fn::Sub": [_replace_in_sub(str(sub[0]), names), _replace_references(sub[1], names)]}
    return {key: _replace_references(value, names) for key, value in node.items()}


def _replace_in_sub(text: str, names: set[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name, _, attribute = match.group(1).partition(".")
        if name not in names:
            return match.group(0)
        return _placeholder(name, attribute or None)

    return re.sub(r"\$\{([A-Za-z0-9]+(?:\.[A-Za-z0-9.]+)?)\}", replace, text)


def _function_sources(template: dict[str, Any], code_zips: dict[str, Path]) -> dict[str, FunctionSource]:
    resources = template["Resources"]
    result: dict[str, FunctionSource] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        props = resource.get("Properties", {})
        code = props.get("Code", {})
        code_dir = code_zips.get(code.get("S3Key", ""))
        if code_dir is None:
            continue  # not built from a local folder (inline code, image): the engine leaves it to moto
        layer_dirs: list[Path] = []
        for layer in props.get("Layers", []):
            ref = layer.get("Ref") if isinstance(layer, dict) else None
            content = resources.get(ref, {}).get("Properties", {}).get("Content", {}) if ref else {}
            layer_dir = code_zips.get(content.get("S3Key", ""))
            if layer_dir is not None:
                layer_dirs.append(layer_dir)
        result[logical_id] = FunctionSource(
            logical_id=logical_id,
            code_dir=code_dir,
            handler=str(props.get("Handler", "app.lambda_handler")),
            timeout=int(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            layer_dirs=tuple(layer_dirs),
        )
    return result


def zip_folder(folder: Path) -> bytes:
    """A deterministic zip of ``folder`` (what ``sam build`` would upload, minus dependencies)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_NAMES and not d.endswith(".egg-info"))
            for filename in sorted(filenames):
                if filename.endswith((".pyc", ".pyo")):
                    continue
                path = Path(dirpath) / filename
                info = zipfile.ZipInfo(str(path.relative_to(folder)), date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                archive.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def parameter_names(sam: dict[str, Any]) -> set[str]:
    return set(sam.get("Parameters", {}))
