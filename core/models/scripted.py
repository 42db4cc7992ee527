"""Scripted stand-ins for real models, for demos and end-to-end tests (``OPTIMUS_SCRIPTED_MODELS=true``).

They sit exactly at the model boundary (pydantic-ai ``FunctionModel``): everything else — recall,
streaming, persistence, the two-phase pipeline, the queue — is the real code. Never enabled by
default; the model picker labels them plainly.

* ``test:echo`` answers "You said: …" in a few streamed pieces;
* ``test:memory`` (as ``OPTIMUS_MEMORY_MODEL``) extracts each statement the pipeline shows it as
  one fact, and answers "new" to every update question.
"""

from __future__ import annotations

import re

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from core.memory.types import MAX_FACT_CHARS

_MESSAGE = re.compile(r"^Message:\s*(.+)$", re.MULTILINE)


def _last_user_text(messages: list[ModelMessage]) -> str:
    for message in reversed(messages):
        for part in reversed(getattr(message, "parts", [])):
            if getattr(part, "part_kind", "") == "user-prompt":
                return str(part.content)
    return ""


def echo_model() -> FunctionModel:
    async def stream(messages: list[ModelMessage], info: AgentInfo):
        words = f"You said: {_last_user_text(messages)}".split(" ")
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word

    def reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart(f"You said: {_last_user_text(messages)}")])

    return FunctionModel(reply, stream_function=stream, model_name="echo")


def memory_model() -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        tool = info.output_tools[0]
        prompt = _last_user_text(messages)
        if "facts" in tool.parameters_json_schema.get("properties", {}):
            found = _MESSAGE.search(prompt)
            said = found.group(1).strip().rstrip(".!") if found else ""
            args = {"facts": [said[:MAX_FACT_CHARS]] if said else []}  # within the schema, like a real model
        else:
            args = {"verdicts": ["new"] * len(re.findall(r"^NEW \d+:", prompt, re.MULTILINE))}
        return ModelResponse(parts=[ToolCallPart(tool_name=tool.name, args=args)])

    return FunctionModel(respond, model_name="memory")
