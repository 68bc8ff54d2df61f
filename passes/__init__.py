"""Graph passes of hiercompile: the tag rule, the FX tagging pass and the ONNX passes.

Installed as ``hiercompile.passes``.
"""

from .carry_tags import CarryTagsPass
from .contiguous_views import ContiguousViewsPass
from .deduplicate_constants import DeduplicateConstantsPass
from .functionize import FUNCTION_DOMAIN, FunctionizePass, FunctionizeResult, InlineFunctionsPass
from .fx_tag import call_indices, tag_fx_graph, tag_graph_module
from .hierarchy_metadata import HierarchyMetadataPass
from .inherit_tags import InheritTagsPass, UnmappedNodesError
from .io_names import NameInputsOutputsPass
from .merge_duplicates import MergeDuplicatesPass
from .meta_weights import MetaWeightsPass
from .module_tags import KeepPredicate, ModuleHierarchy, ModuleInfo, is_kept
from .namespace import NamespacePass
from .partition import (
    Partition,
    attribute_key,
    captured_values,
    is_convex,
    node_inputs,
    partition,
    subgraph_owners,
    subgraphs,
    top_level,
    users,
)
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
    "Partition",
    "RetagPass",
    "RetagResult",
    "ScopedNamesPass",
    "StripTagAttributesPass",
    "TagInitializersPass",
    "UnmappedNodesError",
    "ancestors",
    "attribute_key",
    "call_indices",
    "captured_values",
    "common_ancestor",
    "get_calls",
    "get_tags",
    "is_convex",
    "is_kept",
    "is_under",
    "node_inputs",
    "partition",
    "set_node_tags",
    "subgraph_owners",
    "subgraphs",
    "tag_depth",
    "tag_fx_graph",
    "tag_graph_module",
    "top_level",
    "users",
]
