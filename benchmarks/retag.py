"""Tags through the tools users run before deploying: as each tool leaves them, then after retag.

Eight models of tests/zoo (tiny configurations, random weights: an encoder, two decoders, an
encoder-decoder, three convolutional networks, one of them a mobile network with depthwise
convolutions and hard-swish, and a mobile vision transformer), exported flat and in functions
form, through every tool
of ``deploy_tools.TOOLS``. "kept by the tool": share of the tool's nodes that still carry a
tag (a function call counts for its body); "after retag": share tagged by ``hiercompile.retag``
(nothing guessed, the rest is listed as unmapped); "value makers": nodes making a value the
export made (by name) that are on that value's maker's module, of all such nodes; "evidence":
the rules that tagged most nodes; "why not": where a row stays under 99%.

    python benchmarks/retag.py
"""

from __future__ import annotations

import platform
import sys
import tempfile
from pathlib import Path

import onnx_ir as ir
import onnxruntime as ort
import torch
from _measure import markdown_table, quiet, write_result
from deploy_tools import KNOWN_GAPS, TEXT_ONLY, TOOLS, value_makers, wrong_makers
from hiercompile.passes import FUNCTION_DOMAIN, InlineFunctionsPass, get_tags

import hiercompile


def kept(path: Path) -> tuple[int, int]:
    """(nodes, nodes with a full tag) of a tool's output, our functions inlined (their calls carry
    tags). A tool that inlines them itself leaves the bodies' relative tags, which name no module."""
    model = ir.load(str(path))
    if any(f.domain == FUNCTION_DOMAIN for f in model.functions.values()):
        InlineFunctionsPass()(model)
    nodes = [n for n in model.graph if n.op_type != "Constant"]
    return len(nodes), sum(all(t.startswith("/") for t in get_tags(n) or [""]) for n in nodes)


MODELS = ("bert", "gpt2", "llama", "whisper", "resnet", "convnext", "mobilenet", "mobilevit")


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from zoo.models import build

    quiet()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in MODELS:
            model, inputs = build(name)
            hiercompile.export(model, (), folder / name, kwargs=inputs, functions=True)
            for form in ("model.onnx", "model.functions.onnx"):
                source = folder / name / form
                flat = hiercompile.HierarchyRetriever(source).model
                label = "functions" if "functions" in form else "flat"
                for tool_name, tool in TOOLS.items():
                    if tool_name in TEXT_ONLY and name != "bert":
                        continue
                    out = folder / f"{name}.{label}.{len(rows)}.onnx"
                    if tool_name.startswith("onnx.version_converter") and label == "functions":
                        rows.append([name, label, tool_name, "-", "-", "-", "-", "-", "drops the model's functions"])
                        continue
                    tool(source, out)
                    total, tagged = kept(out)
                    result = hiercompile.retag(out, source)
                    makers = value_makers(result.model, flat)
                    right = makers - len(wrong_makers(result.model, flat))
                    evidence = ", ".join(f"{rule} {n}" for rule, n in result.evidence.most_common(3))
                    rows.append(
                        [
                            name,
                            label,
                            tool_name,
                            str(total),
                            f"{tagged / total:.0%}",
                            f"{result.coverage:.1%}",
                            f"{right} of {makers}",
                            evidence,
                            KNOWN_GAPS.get((name, label, tool_name), ""),
                        ]
                    )
    header = [
        "model",
        "form",
        "tool",
        "nodes",
        "kept by the tool",
        "after retag",
        "value makers",
        "evidence (most nodes)",
        "why not",
    ]
    text = (
        f"Share of each tool's nodes carrying a module tag. onnxruntime {ort.__version__}, "
        f"torch {torch.__version__.split('+')[0]}, {platform.machine()}.\n\n" + markdown_table(header, rows)
    )
    write_result("retag.md", text)


if __name__ == "__main__":
    main()
