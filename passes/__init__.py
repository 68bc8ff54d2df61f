"""Graph passes of hiercompile: the tag model and the ONNX passes that keep tags.

Installed as ``hiercompile.passes``. The package's names are the passes and the tag model
(the tag rule, the metadata keys and how to read them); the FX tagging pass is
``hiercompile.passes.fx_tag`` and the graph helpers the passes share are
``hiercompile.passes.partition``.
"""

from .carry_tags import CarryTagsPass
from .contiguous_views import ContiguousViewsPass
from .deduplicate_constants import DeduplicateConstantsPass
from .functionize import FUNCTION_DOMAIN, FunctionizePass, FunctionizeResult, InlineFunctionsPass
from .hierarchy_metadata import HierarchyMetadataPass
from .inherit_tags import InheritTagsPass, UnmappedNodesError
from .io_names import NameInputsOutputsPass
from .merge_duplicates import MergeDuplicatesPass
from .meta_weights import MetaWeightsPass
from .module_tags import KeepPredicate, ModuleHierarchy, ModuleInfo, is_kept
from .namespace import NamespacePass
from .retag import RetagPass, RetagResult
from .scoped_names import ORIGINAL_NAME_KEY, ScopedNamesPass
from .tag_attributes import AddTagAttributesPass, StripTagAttributesPass
from .tag_initializers import TagInitializersPass
from .tags import (
    CALLS_KEY,
    HIERARCHY_KEY,
    TAG_KEY,
    TAGS_KEY,
    VERSION_KEY,
    ancestors,
    common_ancestor,
    get_calls,
    get_tags,
    is_under,
    set_node_tags,
    tag_depth,
)

__all__ = [
    "CALLS_KEY",
    "FUNCTION_DOMAIN",
    "HIERARCHY_KEY",
    "ORIGINAL_NAME_KEY",
    "TAGS_KEY",
    "TAG_KEY",
    "VERSION_KEY",
    "AddTagAttributesPass",
    "CarryTagsPass",
    "ContiguousViewsPass",
    "DeduplicateConstantsPass",
    "FunctionizePass",
    "FunctionizeResult",
    "HierarchyMetadataPass",
    "InheritTagsPass",
    "InlineFunctionsPass",
    "KeepPredicate",
    "MergeDuplicatesPass",
    "MetaWeightsPass",
    "ModuleHierarchy",
    "ModuleInfo",
    "NameInputsOutputsPass",
    "NamespacePass",
    "RetagPass",
    "RetagResult",
    "ScopedNamesPass",
    "StripTagAttributesPass",
    "TagInitializersPass",
    "UnmappedNodesError",
    "ancestors",
    "common_ancestor",
    "get_calls",
    "get_tags",
    "is_kept",
    "is_under",
    "set_node_tags",
    "tag_depth",
]
