"""What a chat completion or an embeddings answer says, read from its JSON with nothing taken on trust."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.llm.wire import Answer, malformed


@dataclass(frozen=True, slots=True)
class LLMReply:
    content: str | None
    tool_calls: list[dict[str, Any]]  # [{"id", "name", "arguments" (raw JSON text)}]
    refusal: str | None = None  # the model's words when it refused

    def assistant_message(self) -> dict[str, Any]:
        """The reply as a message to append to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in self.tool_calls
            ]
        return message


def parse_chat(answer: Answer) -> LLMReply:
    """The first choice's message; raises Failed ("malformed") when the JSON is not a chat completion."""
    choices = answer.body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise malformed(answer, "a chat completion")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise malformed(answer, "a chat completion")
    refusal = message.get("refusal")
    calls = []
    for i, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        arguments = function.get("arguments")
        calls.append(
            {
                "id": str(call.get("id") or f"call_{i}"),
                "name": function["name"],
                "arguments": arguments if isinstance(arguments, str) and arguments else "{}",
            }
        )
    return LLMReply(
        _text(message.get("content")),
        calls,
        refusal=str(refusal) if refusal else None,
    )


def parse_embeddings(answer: Answer, *, count: int) -> list[list[float]]:
    """One vector per input, in input order; raises Failed ("malformed") otherwise."""
    data = answer.body.get("data")
    if not isinstance(data, list):
        raise malformed(answer, "embeddings")
    try:
        items = sorted(data, key=lambda item: int(item["index"]))
        vectors = [[float(x) for x in item["embedding"]] for item in items]
    except (KeyError, TypeError, ValueError) as exc:
        raise malformed(answer, "embeddings") from exc
    if len(vectors) != count:
        raise malformed(answer, f"{count} embeddings (it has {len(vectors)})")
    return vectors


def _text(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a list of content parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [str(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "".join(parts) if parts else None
    return str(content)
