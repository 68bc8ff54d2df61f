"""Pins the public API: a change here is a change users see."""

import importlib
import inspect
import subprocess
import sys

import pytest
import torch

import hiercompile

FUNCTIONS = [
    "backend",
    "diff",
    "export",
    "export_pretrained",
    "extract",
    "functionize",
    "is_kept",
    "node_data",
    "profile",
    "quantize",
    "report",
    "retag",
    "sensitivity",
    "verify",
    "verify_pretrained",
]
CLASSES = [
    "DiffReport",
    "ExportResult",
    "FunctionizeResult",
    "HierarchyRetriever",
    "ModuleCheck",
    "ModuleHierarchy",
    "ModuleTime",
    "Policy",
    "PretrainedExport",
    "ProfileReport",
    "QuantizeResult",
    "RetagResult",
    "SensitivityReport",
    "VerifyReport",
]
ERRORS = [
    "CaptureError",
    "CarryError",
    "CompatError",
    "FunctionsError",
    "HiercompileError",
    "InputError",
    "LowerError",
    "ModelLoadError",
    "NotTaggedError",
    "ProfileError",
    "QueryError",
    "RetagError",
    "SaveError",
    "TagError",
    "ValidationError",
    "VerifyError",
]
WARNINGS = [
    "AttributesWarning",
    "BrokenModelWarning",
    "CaptureWarning",
    "FallbackWarning",
    "OptionWarning",
    "StaleResultWarning",
    "UnusedInputWarning",
]


def test_public_names():
    assert sorted(hiercompile.__all__) == sorted([*FUNCTIONS, *CLASSES, *ERRORS, *WARNINGS, "__version__"])
    for name in hiercompile.__all__:
        assert getattr(hiercompile, name) is not None
    assert set(dir(hiercompile)) >= set(hiercompile.__all__)


def test_export_takes_torch_onnx_export_arguments():
    ours = inspect.signature(hiercompile.export).parameters
    assert list(ours)[:3] == ["model", "args", "f"]  # positional, as torch.onnx.export
    torch_params = inspect.signature(torch.onnx.export).parameters
    shared = [
        "kwargs",
        "input_names",
        "output_names",
        "opset_version",
        "dynamic_shapes",
        "dynamic_axes",
        "custom_translation_table",
        "optimize",
        "external_data",
        "keep_initializers_as_inputs",
        "training",
        "verbose",
    ]
    for name in shared:
        assert name in torch_params and ours[name].kind is inspect.Parameter.KEYWORD_ONLY
    own = ["keep", "functions", "attributes", "scoped_names", "namespace", "weights", "stack_traces", "progress"]
    assert [p for p in ours if p not in ["model", "args", "f", *shared, "unsupported"]] == own
    assert ours["unsupported"].kind is inspect.Parameter.VAR_KEYWORD  # an unknown argument is an InputError


def test_errors_share_a_base_and_warnings_are_user_warnings():
    import hiercompile.errors

    assert sorted(hiercompile.errors.__all__) == sorted([*ERRORS, *WARNINGS])
    for name in hiercompile.errors.__all__:
        assert getattr(hiercompile.errors, name) is getattr(hiercompile, name)
    for name in ERRORS:
        assert issubclass(getattr(hiercompile, name), hiercompile.HiercompileError)
    for name in WARNINGS:
        assert issubclass(getattr(hiercompile, name), UserWarning)


def test_import_loads_neither_torch_nor_onnx():
    code = (
        "import sys, hiercompile, hiercompile._cli; "
        "print(sorted(m for m in ('torch', 'onnx', 'onnx_ir', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_no_module_level_mutable_state():
    """Every module of the package holds constants only: state lives in objects the caller owns."""
    import importlib
    import pkgutil
    import weakref

    mutable = (dict, list, set, bytearray, weakref.WeakSet, weakref.WeakKeyDictionary, weakref.WeakValueDictionary)
    found = []
    import hiercompile.passes

    packages = [*pkgutil.walk_packages(hiercompile.__path__, "hiercompile.")]
    packages += pkgutil.walk_packages(hiercompile.passes.__path__, "hiercompile.passes.")
    for info in packages:
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if not name.startswith("__") and isinstance(value, mutable):
                found.append(f"{info.name}.{name}")
    assert found == []


@pytest.mark.parametrize("package", ["hiercompile", "hiercompile._tools", "hiercompile._hf"])
def test_the_names_for_type_checkers_are_the_lazy_ones(package):
    import ast
    from pathlib import Path

    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__).read_text())
    checked = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    names = {a.asname or a.name for node in checked.body for a in node.names}
    assert names == set(module._LAZY)
    assert all(getattr(module, name) is not None for name in module._LAZY)  # each one resolves
