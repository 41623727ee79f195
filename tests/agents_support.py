"""The openai-agents SDK through a gateway: its model for either API, and one run of an agent."""

from __future__ import annotations

from typing import Any

from agents import Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner
from agents.result import RunResultBase
from openai import AsyncOpenAI

from tests.harness import TENANT_KEY, Gateway


def agents_model(api: str, gateway: Gateway, model: str = "assistant") -> Any:
    """The Agents SDK model for `api` ("chat" or "responses"), talking to `gateway`."""
    client = AsyncOpenAI(base_url=gateway.base_url, api_key=TENANT_KEY, max_retries=0)
    kind = OpenAIChatCompletionsModel if api == "chat" else OpenAIResponsesModel
    return kind(model=model, openai_client=client)


async def run_agent(agent: Agent[Any], prompt: str, *, streamed: bool) -> RunResultBase:
    """One run, streamed (every event consumed) or not."""
    if not streamed:
        return await Runner.run(agent, prompt)
    result = Runner.run_streamed(agent, prompt)
    async for _ in result.stream_events():
        pass
    return result
