"""The LLM agent's wiring for any model: the whole loop (tools offered with their schemas, tool calls
run on the server, results and typed errors handed back, tokens and cost counted) through a
scripted stand-in endpoint on 127.0.0.1 for both wire formats (Anthropic's Messages API and
OpenAI-compatible chat completions). Not the model's quality: the stand-in's calls are canned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from mcp import Client

from lumos_mcp.agents.llm import LLMConfig, LLMUnavailable, run_session
from lumos_mcp.arena.problems import PROBLEMS
from lumos_mcp.arena.strategies import LLMAgentStrategy, StrategyUnavailable
from lumos_mcp.audit import iter_records
from lumos_mcp.kernelfs.fake import FakeKernel
from lumos_mcp.server import build_server
from lumos_mcp.service import Service
from tests.llm_standin import Script, standin_endpoint

ROOT = Path(__file__).resolve().parent.parent
POLICY = str(Path(__file__).parent / "data" / "policy-test.toml")
PROVIDERS = {"openai": "/v1", "anthropic": ""}  # where each SDK expects its base URL to end


def tuning_script() -> Script:
    return Script(
        steps=[
            ("list_tunables", {"only_allowed": True}),
            ("stage_sched_params", {"changes": {"kernel.core_pattern": "|/bin/sh"}}),  # refused, typed
            ("stage_sched_params", {"changes": {"vm.swappiness": 10}}),
            ("apply", {"txid": "{txid}"}),
            ("commit", {"txid": "{txid}"}),
        ]
    )


def config_for(provider: str, url: str, **env: str) -> LLMConfig:
    return LLMConfig.from_env(
        {"LUMOS_LLM_PROVIDER": provider, "LUMOS_LLM_BASE_URL": url + PROVIDERS[provider], "LUMOS_LLM_MODEL": "stand-in"}
        | env
    )


@pytest.mark.anyio
@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_a_scripted_model_stages_applies_and_commits_through_either_wire_format(
    provider: str, make_service: Callable[..., Service], fake: FakeKernel
) -> None:
    script = tuning_script()
    service = make_service(policy=POLICY)
    with standin_endpoint(script) as url:
        config = config_for(provider, url, LUMOS_LLM_PRICE_IN="3", LUMOS_LLM_PRICE_OUT="15")
        async with Client(build_server(service)) as client:
            report = await run_session(client, config, turns=10)

    # the model was offered the server's tools with their input schemas, in the provider's format
    first = script.requests[0]
    names = (
        {t["function"]["name"] for t in first["tools"]} if provider == "openai" else {t["name"] for t in first["tools"]}
    )
    assert {"list_tunables", "stage_sched_params", "apply", "commit", "read_telemetry"} <= names
    # every canned call ran on the server, in order; the refused one came back as a typed error
    assert [o.call.name for o in report.tool_calls] == [name for name, _ in script.steps]
    assert [is_error for _, is_error in script.results] == [False, True, False, False, False]
    assert json.loads(script.results[1][0])["error"]["code"] == "unknown_knob"
    assert report.final_text == script.final and report.turns == len(script.steps) + 1
    assert fake.read("proc/sys/vm/swappiness").strip() == "10"
    events = [r["event"] for r in iter_records(service.audit.path)]
    assert [e for e in events if e in ("apply", "commit")] == ["apply", "commit"]
    # tokens are the endpoint's own counts, summed; the cost follows the configured prices
    assert report.usage.calls == len(script.requests)
    assert report.usage.input_tokens == sum(script.input_tokens)
    assert report.usage.output_tokens == script.output_tokens * len(script.requests)
    expected = (report.usage.input_tokens * 3 + report.usage.output_tokens * 15) / 1e6
    assert report.usage.cost_usd == pytest.approx(expected)


def test_the_configuration_names_what_is_missing_and_picks_the_provider_from_the_environment() -> None:
    with pytest.raises(LLMUnavailable, match="ANTHROPIC_API_KEY"):
        LLMConfig.from_env({})
    with pytest.raises(LLMUnavailable, match="LUMOS_LLM_MODEL"):
        LLMConfig.from_env({"LUMOS_LLM_BASE_URL": "http://127.0.0.1:11434/v1"})
    with pytest.raises(LLMUnavailable, match="anthropic or openai"):
        LLMConfig.from_env({"LUMOS_LLM_PROVIDER": "gemini", "LUMOS_LLM_API_KEY": "k"})
    with pytest.raises(LLMUnavailable, match="LUMOS_LLM_PRICE_IN"):
        LLMConfig.from_env({"ANTHROPIC_API_KEY": "k", "LUMOS_LLM_PRICE_IN": "cheap"})
    assert LLMConfig.from_env({"ANTHROPIC_API_KEY": "k"}).provider == "anthropic"
    local = LLMConfig.from_env({"LUMOS_LLM_BASE_URL": "http://127.0.0.1:11434/v1", "LUMOS_LLM_MODEL": "qwen3:8b"})
    assert (local.provider, local.model, local.api_key) == ("openai", "qwen3:8b", "unused")
    assert LLMConfig.from_env({"ANTHROPIC_API_KEY": "k"}).price_in_per_mtok is None


@pytest.mark.anyio
async def test_the_arena_llm_strategy_proposes_the_models_json_clipped_to_the_problem() -> None:
    problem = next(p for p in PROBLEMS.values() if any(k.kind != "bool" for k in p.knobs))
    knob = next(k for k in problem.knobs if k.kind != "bool")
    wanted = knob.high * 10  # beyond the problem's range: the strategy clips it
    script = Script(steps=[], final=f"Here: {json.dumps({knob.knob_id: wanted})}")

    class Tools:
        async def call(self, name: str, args: dict[str, object]) -> dict[str, object]:
            assert name == "list_tunables"
            return {"tunables": []}

    with standin_endpoint(script) as url:
        strategy = LLMAgentStrategy(
            {"LUMOS_LLM_PROVIDER": "openai", "LUMOS_LLM_BASE_URL": url + "/v1", "LUMOS_LLM_MODEL": "stand-in"}
        )
        strategy.reset(problem, seed=1)
        config = await strategy.propose([], Tools())  # type: ignore[arg-type]
    assert config[knob.knob_id] == knob.high
    assert set(config) == set(problem.knob_ids)
    assert strategy.usage.calls == 1 and strategy.usage.input_tokens == script.input_tokens[0]


def test_the_arena_llm_strategy_is_skipped_with_the_reason_when_no_model_is_configured() -> None:
    problem = next(iter(PROBLEMS.values()))
    with pytest.raises(StrategyUnavailable, match="no model configured"):
        LLMAgentStrategy({}).reset(problem, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_the_llm_agent_example_runs_a_session_over_stdio_and_prints_its_tokens(provider: str, tmp_path: Path) -> None:
    script = Script(steps=[("get_status", {}), ("list_tunables", {"only_allowed": True})], final="Nothing to change.")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUMOS_", "ANTHROPIC_", "OPENAI_"))}
    with standin_endpoint(script) as url:
        env |= {
            "LUMOS_LLM_PROVIDER": provider,
            "LUMOS_LLM_BASE_URL": url + PROVIDERS[provider],
            "LUMOS_LLM_MODEL": "stand-in",
            "LUMOS_STATE_DIR": str(tmp_path / "state"),
        }
        done = subprocess.run(
            [sys.executable, "examples/llm_agent.py", "--turns", "5"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"model: {provider}:stand-in" in done.stdout
    assert "tool get_status({}) ->" in done.stdout and "agent: Nothing to change." in done.stdout
    tokens = f"3 model calls, {sum(script.input_tokens)} input + {3 * script.output_tokens} output tokens"
    assert tokens in done.stdout


def test_the_llm_agent_example_explains_itself_when_no_model_is_configured(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUMOS_", "ANTHROPIC_", "OPENAI_"))}
    done = subprocess.run(
        [sys.executable, "examples/llm_agent.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "no LLM:" in done.stdout and "lumos-mcp tune" in done.stdout
