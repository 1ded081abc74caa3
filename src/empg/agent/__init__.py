"""ReAct agents: prompts, response parsing, generation backends and grouped rollouts."""

from empg.agent.parsing import INVALID_ACTION, ParsedResponse, format_response, parse_response
from empg.agent.prompts import PromptConfig, Turn, build_messages, render_prompt

__all__ = [
    "INVALID_ACTION",
    "ParsedResponse",
    "PromptConfig",
    "Turn",
    "build_messages",
    "format_response",
    "parse_response",
    "render_prompt",
]
