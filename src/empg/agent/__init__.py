"""ReAct agents: prompts, response parsing, generation backends and grouped rollouts."""

from empg.agent.batch import RolloutBatch, Sequences, StepRow, StepTable, Trajectory
from empg.agent.constrain import ActionConstraint
from empg.agent.generation import (
    FINISH_REASONS,
    Generation,
    GenerationBackend,
    GenerationConfig,
    HFBackend,
    PrefixCache,
)
from empg.agent.parsing import INVALID_ACTION, ParsedResponse, format_response, parse_response
from empg.agent.prompts import PromptConfig, Turn, build_messages, render_prompt
from empg.agent.rollout import RolloutConfig, collect_rollouts

__all__ = [
    "FINISH_REASONS",
    "INVALID_ACTION",
    "ActionConstraint",
    "Generation",
    "GenerationBackend",
    "GenerationConfig",
    "HFBackend",
    "ParsedResponse",
    "PrefixCache",
    "PromptConfig",
    "RolloutBatch",
    "RolloutConfig",
    "Sequences",
    "StepRow",
    "StepTable",
    "Trajectory",
    "Turn",
    "build_messages",
    "collect_rollouts",
    "format_response",
    "parse_response",
    "render_prompt",
]
