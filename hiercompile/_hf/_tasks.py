"""Tasks as optimum names them, the head class each one needs, and
the task a checkpoint's configuration implies.

A task is a transformers auto class (its mapping says which model types have that head)
and, for generation, how the model is split into files and whether it takes a cache.
Nothing here knows a model family: transformers' own auto mappings decide.
"""

from __future__ import annotations

__all__ = [
    "BATCH",
    "CACHE_POSITIONS",
    "ENCODER_SEQUENCE",
    "NEW_TOKENS",
    "PAST",
    "SEQUENCE",
    "TASKS",
    "TOTAL",
    "Task",
    "infer_task",
    "supported_tasks",
    "task_named",
]

import dataclasses
import types

from .._axes import BATCH, ENCODER_SEQUENCE, PAST, SEQUENCE, TOTAL
from .._errors import InputError


@dataclasses.dataclass(frozen=True)
class Task:
    """``auto_class``: the transformers class that builds the head; ``mapping``: the name of
    its model type -> class mapping in ``transformers.models.auto.modeling_auto``;
    ``layout``: ``"single"`` (one model), ``"decoder"`` (one model that may take a cache) or
    ``"seq2seq"`` (encoder and decoder files); ``with_past``: cache inputs and outputs."""

    auto_class: str
    mapping: str
    layout: str = "single"
    with_past: bool = False

    def extra_positions(self) -> int:
        """Positions the example inputs run beyond ``--seq-len`` (:data:`CACHE_POSITIONS` with a cache)."""
        return CACHE_POSITIONS if self.with_past else 0


NEW_TOKENS = 2  # tokens a with-past example feeds after its cache
# with a cache, a second example one longer (to tell the dynamic dims apart), then the new tokens
CACHE_POSITIONS = 1 + NEW_TOKENS


_HEADS = types.MappingProxyType(
    {
        "feature-extraction": (
            "AutoModel",
            "MODEL_MAPPING_NAMES",
            "single",
        ),
        "fill-mask": (
            "AutoModelForMaskedLM",
            "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
            "single",
        ),
        "text-classification": (
            "AutoModelForSequenceClassification",
            "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
            "single",
        ),
        "token-classification": (
            "AutoModelForTokenClassification",
            "MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",
            "single",
        ),
        "image-classification": (
            "AutoModelForImageClassification",
            "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
            "single",
        ),
        "text-generation": (
            "AutoModelForCausalLM",
            "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
            "decoder",
        ),
        "text2text-generation": (
            "AutoModelForSeq2SeqLM",
            "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
            "seq2seq",
        ),
        "automatic-speech-recognition": (
            "AutoModelForSpeechSeq2Seq",
            "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES",
            "seq2seq",
        ),
    }
)
# optimum's names; generation also "-with-past"; speech recognition by CTC has no decoder to cache
TASKS: types.MappingProxyType[str, Task] = types.MappingProxyType(
    {
        **{name: Task(*head) for name, head in _HEADS.items()},
        **{f"{name}-with-past": Task(*head, with_past=True) for name, head in _HEADS.items() if head[2] != "single"},
        "automatic-speech-recognition-ctc": Task("AutoModelForCTC", "MODEL_FOR_CTC_MAPPING_NAMES"),
    }
)


def _mapping(task: Task) -> dict[str, object]:
    from transformers.models.auto import modeling_auto

    return getattr(modeling_auto, task.mapping, {})


def _classes(value: object) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, list | tuple) else (str(value),)


def task_named(name: str) -> Task:
    """The task called ``name``; an unknown name is an :class:`InputError` listing them."""
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name]


def supported_tasks(model_type: str) -> list[str]:
    """The tasks whose head class exists for ``model_type`` (a configuration's ``model_type``)."""
    return [name for name, task in TASKS.items() if model_type in _mapping(task)]


def infer_task(config: dict) -> str:
    """The task a configuration's ``architectures`` names (its first class's head; generation
    first, with its cache, as optimum does: a class that also fills masks generates), else
    ``feature-extraction``."""
    architectures = config.get("architectures") or []
    if not architectures:
        return "feature-extraction"
    order = sorted(TASKS, key=lambda name: not TASKS[name].with_past)
    for name in order:
        task = TASKS[name]
        if name == "feature-extraction" or (task.layout != "single" and not task.with_past):
            continue
        if any(architectures[0] in _classes(value) for value in _mapping(task).values()):
            return name
    return "feature-extraction"
