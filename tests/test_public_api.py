"""Pins the public API: a change here is a change users see."""

import inspect

import hiercompile


def test_public_names():
    assert sorted(hiercompile.__all__) == sorted(
        [
            "ExportResult",
            "HiercompileError",
            "HierarchyRetriever",
            "ModuleHierarchy",
            "ProfileReport",
            "VerifyReport",
            "__version__",
            "backend",
            "export",
            "extract",
            "is_kept",
            "profile",
            "report",
            "verify",
        ]
    )


def test_export_signature():
    params = inspect.signature(hiercompile.export).parameters
    assert list(params) == [
        "model",
        "args",
        "kwargs",
        "output",
        "keep",
        "dynamic_shapes",
        "attributes",
        "functions",
        "scoped_names",
        "namespace",
        "external_data",
        "progress",
    ]
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in ["keep", "dynamic_shapes", "attributes"])


def test_errors_share_a_base():
    from hiercompile import _errors

    classes = [c for c in vars(_errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert all(issubclass(c, hiercompile.HiercompileError) for c in classes)
