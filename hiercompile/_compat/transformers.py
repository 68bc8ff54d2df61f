"""transformers' undocumented names."""

from __future__ import annotations

__all__ = ["register_caches"]

import logging
import sys

from torch import nn

logger = logging.getLogger(__name__)


def register_caches(model: nn.Module) -> None:
    """Make a transformers model's cache classes pytrees that torch.export can take and return,
    as transformers' own exporter does: every ``Cache`` subclass and the model module's cache
    classes. Nothing for a model that holds no transformers model.

    Undocumented: ``transformers.exporters.exporter_dynamo.register_cache_pytrees_for_model``,
    checked on transformers 5.17 to 5.25. Without it a model that returns its cache fails
    to capture, with torch's message naming the cache class.
    """
    transformers = sys.modules.get("transformers")
    if transformers is None:  # a model of transformers has imported it
        return
    found = next((m for m in model.modules() if isinstance(m, transformers.PreTrainedModel)), None)
    if found is None:
        return
    try:
        from transformers.exporters.exporter_dynamo import register_cache_pytrees_for_model
    except ImportError:
        logger.debug("transformers.exporters.exporter_dynamo is missing: caches are not registered as pytrees")
        return
    register_cache_pytrees_for_model(found)
