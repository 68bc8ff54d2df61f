"""Graph passes of hiercompile: the tag rule, the FX tagging pass and the ONNX passes.

Installed as ``hiercompile.passes``.
"""

from .carry_tags import CarryTagsPass
from .deduplicate_constants import DeduplicateConstantsPass
from .functionize import FUNCTION_DOMAIN, FunctionizePass, FunctionizeResult, InlineFunctionsPass
from .fx_tag import FX_TAG_KEY, call_indices, tag_fx_graph
from .hierarchy_metadata import HierarchyMetadataPass
from .inherit_tags import InheritTagsPass, UnmappedNodesError
from .merge_duplicates import MergeDuplicatesPass
from .module_tags import KeepPredicate, ModuleHierarchy, ModuleInfo, is_kept
from .namespace import NamespacePass
from .scoped_names import ORIGINAL_NAME_KEY, ScopedNamesPass
from .tag_attributes import AddTagAttributesPass, StripTagAttributesPass
from .tag_initializers import TagInitializersPass
from .tags import CALLS_KEY, HIERARCHY_KEY, TAG_KEY, TAGS_KEY, VERSION_KEY, get_calls, get_tags, is_under, set_node_tags

__all__ = [
    "CALLS_KEY",
    "FUNCTION_DOMAIN",
    "FX_TAG_KEY",
    "HIERARCHY_KEY",
    "ORIGINAL_NAME_KEY",
    "TAGS_KEY",
    "TAG_KEY",
    "VERSION_KEY",
    "AddTagAttributesPass",
    "CarryTagsPass",
    "DeduplicateConstantsPass",
    "FunctionizePass",
    "FunctionizeResult",
    "HierarchyMetadataPass",
    "InheritTagsPass",
    "InlineFunctionsPass",
    "KeepPredicate",
    "MergeDuplicatesPass",
    "ModuleHierarchy",
    "ModuleInfo",
    "NamespacePass",
    "ScopedNamesPass",
    "StripTagAttributesPass",
    "TagInitializersPass",
    "UnmappedNodesError",
    "call_indices",
    "get_calls",
    "get_tags",
    "is_kept",
    "is_under",
    "set_node_tags",
    "tag_fx_graph",
]
