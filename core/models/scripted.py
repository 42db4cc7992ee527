"""Scripted stand-ins for real models, for demos and end-to-end tests (``OPTIMUS_SCRIPTED_MODELS=true``).

They sit exactly at the model boundary (pydantic-ai ``FunctionModel``): everything else — recall,
streaming, persistence, the two-phase pipeline, the queue — is the real code. Never enabled by
default; the model picker labels them plainly.

* ``test:echo`` answers "You said: …" in a few streamed pieces;
* ``test:memory`` (as ``OPTIMUS_MEMORY_MODEL``) extracts the user's latest message as one fact
  when it starts with "Remember", and decides ADD for every new candidate.
"""

from __future__ import annotations

import json
import re

from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

_NEWEST = re.compile(r"Newest exchange:\s*\nuser:\s*(.+)", re.IGNORECASE)


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
        if "memories" in tool.parameters_json_schema.get("properties", {}):
            found = _NEWEST.search(prompt)
            said = found.group(1).strip() if found else ""
            memories = []
            if said.lower().startswith("remember"):
                fact = re.sub(r"^remember( that)?[:,]?\s*", "", said, flags=re.IGNORECASE).strip().rstrip(".")
                if fact:
                    memories.append({"text": fact[0].upper() + fact[1:], "type": "fact", "importance": 3,
                                     "confidence": 0.9})
            args = {"memories": memories}
        else:
            data = json.loads(prompt)
            args = {"decisions": [{"candidate": c["candidate"], "action": "ADD"} for c in data["candidates"]]}
        return ModelResponse(parts=[ToolCallPart(tool_name=tool.name, args=args)])

    return FunctionModel(respond, model_name="memory")
