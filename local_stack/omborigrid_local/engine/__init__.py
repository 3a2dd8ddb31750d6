"""The local engine: template.yaml on in-process moto, running the real ASL with the real handlers.

Usage::

    from omborigrid_local.engine import LocalStack

    with LocalStack(api_url=sim.base_url, token=sim.token, parameters={"TenantIds": tenant},
                    wait_scale=0.001) as stack:
        stack.deliver_scheduled()                        # what Scheduler would send CreateJob
        [execution] = stack.wait_for_executions(1, timeout=60)
        history = stack.history(execution["executionArn"])
        stack.outcome_events()                           # "Export Completed" / "Export Failed"

What is real: the ASL file (executed by moto's Step Functions interpreter, switched on with
``mock_aws(config={"stepfunctions": {"execute_state_machine": True}})``), the handlers and the layer code, the
resources and environment variables from template.yaml (translated offline by samtranslator and created by
moto's CloudFormation), the SQS event source mapping (moto invokes StartExport on ``SendMessage``), the token
in Secrets Manager, EventBridge ``PutEvents`` from the state machine.

What the engine stands in for: Lambda's containers (``LambdaFunction._invoke_lambda`` calls the handler
in-process and returns Lambda's error payload when it raises), ``DefinitionSubstitutions`` (moto's
CloudFormation ignores them), EventBridge rule → Lambda targets (moto raises on them; the engine invokes the
function asynchronously, with Lambda's two retries and its DLQ), EventBridge Scheduler (never fires:
``deliver_scheduled`` sends the schedule's own Input with its scheduled time filled in, as Scheduler does), and time (``wait_scale`` shortens Wait states, Retry
intervals and async retry delays). ``deliver_export_requested`` invokes CreateJob directly, so its result comes
back. One stack per process at a time; invocations run one at a time (one ``os.environ``).
"""

from .history import count_retries, count_transitions, describe_path, entered_states, state_inputs, task_failures
from .stack import FunctionError, LocalStack

__all__ = [
    "FunctionError",
    "LocalStack",
    "count_retries",
    "count_transitions",
    "describe_path",
    "entered_states",
    "state_inputs",
    "task_failures",
]
