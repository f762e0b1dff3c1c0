"""A move's result is one typed value: the agent API's response model (so /openapi.json
describes what the API sends), read back by the client as the same value, and planned steps
whose deadlines are the ones a run uses."""

from __future__ import annotations

from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from near_failover.api.app import create_app
from near_failover.api.models import MoveStarted, RunAnswer
from near_failover.inventory import StandbyMode
from near_failover.procedures.move import KeyLeftBehind, MoveResult, NodeState, Outcome
from near_failover.procedures.plan import Deadline, MoveKind, MoveSettings, StepName, make_plan


def a_result() -> MoveResult:
    return MoveResult(
        kind=MoveKind.FAILOVER, mode=StandbyMode.RPC, source="val-a", target="val-b", ok=False, outcome=Outcome.STOPPED,
        message="verify did not finish", run_id=7, seconds={"preflight": 0.5, "fence": 2.25}, missed={"blocks": 1},
        checks={"target_head": 120}, recovery={"finish": ["near-failover history"]},
        node_states={"val-a": NodeState(rpc=False, key_loaded=None, key_in_home="host unreachable", head=None)},
        timeouts=[Deadline("verify", 7.0, "[node.timeouts] of val-b")], notes=["a note"],
        keys_left_behind=[KeyLeftBehind(node="val-a", path="/srv/val-a/validator_key.json", commands=["rm it"])],
    )


def test_the_json_names_the_nodes_from_and_to_and_reads_back_as_the_same_result() -> None:
    result = a_result()
    data = result.to_json()
    assert (data["from"], data["to"], data["outcome"]) == ("val-a", "val-b", "stopped")
    assert data["timeouts"] == {"verify": {"seconds": 7.0, "from": "[node.timeouts] of val-b"}}
    assert "plan" not in data and "source" not in data
    assert MoveResult.model_validate(data) == result


class NoAgent:
    """create_app only needs an object to hand its routes; building the schema calls nothing."""

    node = "val-a"

    def snapshot(self) -> dict[str, Any]:
        raise AssertionError("the schema must not ask the agent")

    def history(self, limit: int = 20) -> list[dict[str, Any]]:
        raise AssertionError("the schema must not ask the agent")


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return create_app(NoAgent(), None).openapi()  # type: ignore[arg-type]


def conforms(spec: dict[str, Any], schema: dict[str, Any], instance: Any) -> list[str]:
    registry = Registry().with_resource("urn:agent", Resource.from_contents(spec, default_specification=DRAFT202012))
    resolved = {"$ref": "urn:agent" + schema["$ref"]}  # FastAPI declares each model by reference
    return [e.message for e in OAS31Validator(resolved, registry=registry).iter_errors(instance)]


def response_schema(spec: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    schema: dict[str, Any] = spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    return schema


def test_the_runs_answer_declares_the_move_result(openapi: dict[str, Any]) -> None:
    schema = response_schema(openapi, "/runs/{run_id}", "get", "200")
    answer = RunAnswer(id=7, state="stopped", active=False, result=a_result(), steps=[{"name": "preflight"}])
    sent = answer.model_dump(mode="json", by_alias=True)
    assert conforms(openapi, schema, sent) == []
    bad = {**sent, "result": {**sent["result"], "outcome": "maybe"}}
    assert conforms(openapi, schema, bad), "an outcome outside the enum must not conform"
    result_schema = openapi["components"]["schemas"]["MoveResult"]
    assert {"from", "to", "outcome", "timeouts"} <= set(result_schema["properties"])


@pytest.mark.parametrize("path", ["/switchover", "/failover"])
def test_a_started_move_and_a_refusal_are_declared(openapi: dict[str, Any], path: str) -> None:
    started = response_schema(openapi, path, "post", "202")
    assert conforms(openapi, started, MoveStarted(run_id=3, run="/runs/3").model_dump()) == []
    assert conforms(openapi, started, {"run": "/runs/3"})
    refused = response_schema(openapi, path, "post", "409")
    assert conforms(openapi, refused, {"error": "refused", "message": "no", "result": a_result().to_json()}) == []


def test_the_plan_carries_the_deadlines_a_run_uses() -> None:
    settings = MoveSettings(preflight=10.0, window_wait=50.0, activate_rpc=300.0)
    plan = make_plan(MoveKind.SWITCHOVER, StandbyMode.RPC, "val-a", "val-b", settings, True, in_window=True)
    assert [s.name for s in plan.steps] == list(StepName)
    deadlines = {s.name: s.deadline for s in plan.steps}
    # --in-window: preflight also waits for the duty gap, so its deadline includes that wait.
    assert deadlines[StepName.PREFLIGHT] == 60.0 and "gap in the pool's duties" in plan.steps[0].does
    assert deadlines[StepName.ACTIVATE] == 300.0
    plain = make_plan(MoveKind.SWITCHOVER, StandbyMode.RPC, "val-a", "val-b", settings, True)
    assert plain.steps[0].deadline == 10.0
