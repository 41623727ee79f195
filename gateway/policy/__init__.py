"""The policy engine: load policy YAML, evaluate requests, gate tool calls and text.

A pure library (no I/O beyond reading the policy directory, no asyncio): the request
pipeline calls `PolicySet.for_tenant(...)` once per request, then
`evaluate_request`, and on the way back one of the gates. docs/policies.md is the
reference for what the rules mean.
"""

from gateway.policy.cases import CaseReport, CaseResult, run_cases
from gateway.policy.chat_gate import ChatStreamGate
from gateway.policy.completion_gate import (
    GateResult,
    PendingCall,
    gate_chat_completion,
    gate_responses_response,
)
from gateway.policy.conditions import VARIABLES
from gateway.policy.detectors import DETECTORS
from gateway.policy.engine import TenantPolicies
from gateway.policy.facts import RequestFacts
from gateway.policy.gating import Emit, Fail, GateItem, Hold
from gateway.policy.loader import PolicySet, load_policies
from gateway.policy.model import ApprovalSpec, Decision, RequestVerdict, ToolVerdict
from gateway.policy.redact import TextFilter
from gateway.policy.responses_gate import ResponsesStreamGate

__all__ = [
    "DETECTORS",
    "VARIABLES",
    "ApprovalSpec",
    "CaseReport",
    "CaseResult",
    "ChatStreamGate",
    "Decision",
    "Emit",
    "Fail",
    "GateItem",
    "GateResult",
    "Hold",
    "PendingCall",
    "PolicySet",
    "RequestFacts",
    "RequestVerdict",
    "ResponsesStreamGate",
    "TenantPolicies",
    "TextFilter",
    "ToolVerdict",
    "gate_chat_completion",
    "gate_responses_response",
    "load_policies",
    "run_cases",
]
