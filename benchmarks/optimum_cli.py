"""``hiercompile export`` against ``optimum-cli export onnx``, end to end, on tiny checkpoints.

optimum-onnx pins transformers < 4.58, so it lives in a venv of its own (``--venv``,
made with ``pip install torch==2.13.0 optimum-onnx onnxruntime`` when missing). The
checkpoints (BERT, LLaMA, ViT, Whisper; tiny, random weights) are written by that
venv's transformers, which both tools then read. Each command runs in a fresh process,
alternating, medians of --runs; optimum validates against PyTorch by default, so
hiercompile runs with and without ``--validate``. hiercompile's bytecode is written first,
as installing a wheel does. Also each CLI's ``--help``, and each
export once more in a process that times apart the imports of what it runs and the
rest, the tool's work (:data:`SPLIT`).

    python benchmarks/optimum_cli.py [--venv /tmp/optimum-venv] [--runs 7]
"""

from __future__ import annotations

import argparse
import compileall
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _measure import markdown_table, write_result

CHECKPOINTS = {  # name: (task, code building the model in the optimum venv)
    "bert": (
        "feature-extraction",
        "BertModel(BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512))",
    ),
    "llama": (
        "text-generation-with-past",
        "LlamaForCausalLM(LlamaConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, "
        "num_key_value_heads=2, intermediate_size=128, vocab_size=1000))",
    ),
    "vit": (
        "image-classification",
        "ViTForImageClassification(ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, "
        "intermediate_size=128, image_size=64, patch_size=16))",
    ),
    "whisper": (
        "automatic-speech-recognition-with-past",
        "WhisperForConditionalGeneration(WhisperConfig(d_model=64, encoder_layers=2, decoder_layers=2, "
        "encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, "
        "vocab_size=1000, max_source_positions=1500, max_target_positions=64, num_mel_bins=80, pad_token_id=0, "
        "bos_token_id=1, eos_token_id=2, decoder_start_token_id=1))",
    ),
}


def venv_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        subprocess.run([*pip, "optimum-onnx", "onnxruntime"], check=True)
    return python


def write_checkpoints(python: Path, folder: Path) -> None:
    for name, (_, build) in CHECKPOINTS.items():
        path = str(folder / name)
        code = f"import torch; from transformers import *; torch.manual_seed(0); {build}.save_pretrained({path!r})"
        subprocess.run([str(python), "-c", code], check=True, capture_output=True)


# each CLI's export, in a process that first imports what that export runs (torch,
# transformers and the model's class; torch.export, torch's ONNX exporter and onnxscript's
# translations for hiercompile; optimum's exporter and ONNX Runtime for optimum), and
# says how long the imports and the rest took
SPLIT = """
import json, sys, time
start = time.perf_counter()
import transformers
{imports}
getattr(transformers, json.load(open({source!r} + "/config.json"))["architectures"][0])
imported = time.perf_counter()
{run}
print(f"split {{imported - start}} {{time.perf_counter() - imported}}", file=sys.stderr)
"""
IMPORTS = {
    "hiercompile": "import torch.export._trace, torch.onnx._internal.exporter._core, "
    "hiercompile._hf._pretrained\nfrom hiercompile._cli import main",
    "optimum": "import onnxruntime, optimum.exporters.onnx.__main__\nfrom optimum.commands.optimum_cli import main",
}
RUN = {"hiercompile": "main(sys.argv[1:])", "optimum": "main()"}


def compile_package() -> None:
    """Write hiercompile's bytecode, as pip does when it installs a wheel (optimum's venv has
    its own): an editable install leaves it to the first import, which a machine with
    PYTHONDONTWRITEBYTECODE set never does, and each run would compile the package again."""
    import hiercompile.passes  # binds hiercompile too

    for package in (hiercompile, hiercompile.passes):
        compileall.compile_dir(Path(package.__file__).parent, quiet=1)


def split(python: str, tool: str, source: str, args: list[str]) -> list[str]:
    """The command that runs ``tool`` with ``args`` and prints its imports' and its work's seconds."""
    code = SPLIT.format(imports=IMPORTS[tool], source=source, run=RUN[tool])
    return [python, "-c", code, *args]


def timed(cmd: list[str]) -> float | tuple[float, float]:
    """Wall seconds of ``cmd``; for a :func:`split` command, the seconds it printed."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.run([a.replace("OUT", f"{tmp}/out") for a in cmd], capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    found = re.search(r"^split (\S+) (\S+)$", proc.stderr, flags=re.M)
    return (float(found.group(1)), float(found.group(2))) if found else seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=Path("/tmp/optimum-venv"))
    parser.add_argument("--runs", type=int, default=7)
    ns = parser.parse_args()
    python = venv_python(ns.venv)
    compile_package()
    optimum = [str(ns.venv / "bin" / "optimum-cli")]
    ours = [shutil.which("hiercompile") or sys.executable]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_checkpoints(python, folder)
        commands = {"help": {"optimum": [*optimum, "--help"], "hiercompile": [*ours, "--help"]}}
        for name, (task, _) in CHECKPOINTS.items():
            source = str(folder / name)
            commands[name] = {
                "optimum": [*optimum, "export", "onnx", "--model", source, "--task", task, "OUT"],
                "hiercompile": [*ours, "export", source, "OUT", "--task", task],
                "hiercompile --validate": [*ours, "export", source, "OUT", "--task", task, "--validate"],
                "optimum split": split(
                    str(python), "optimum", source, ["export", "onnx", "--model", source, "--task", task, "OUT"]
                ),
                "hiercompile split": split(
                    sys.executable, "hiercompile", source, ["export", source, "OUT", "--task", task]
                ),
            }
        for name, cmds in commands.items():
            seconds: dict[str, list] = {k: [] for k in cmds}
            for _ in range(ns.runs):
                for tool, cmd in cmds.items():
                    seconds[tool].append(timed(cmd))
            med = {k: statistics.median(v) for k, v in seconds.items() if "split" not in k}
            for tool in ("optimum", "hiercompile"):
                if f"{tool} split" in seconds:
                    med[f"{tool} imports"] = statistics.median(t[0] for t in seconds[f"{tool} split"])
                    med[f"{tool} work"] = statistics.median(t[1] for t in seconds[f"{tool} split"])
            print(name, med, file=sys.stderr)
            task = "--help" if name == "help" else f"{name} ({CHECKPOINTS[name][0]})"
            # each round's ratio, the two commands run one after the other: this machine's
            # speed drifts by a quarter over minutes, which a ratio of medians would carry
            paired = [ours / theirs for ours, theirs in zip(seconds["hiercompile"], seconds["optimum"], strict=True)]
            ratio = f"{statistics.median(paired):.2f}x"
            if name == "help":
                rows.append([task, f"{med['optimum']:.2f}", f"{med['hiercompile']:.2f}", "", ratio, "", "", "", "", ""])
                continue
            rows.append(
                [
                    task,
                    f"{med['optimum']:.2f}",
                    f"{med['hiercompile']:.2f}",
                    f"{med['hiercompile --validate']:.2f}",
                    ratio,
                    f"{med['optimum imports']:.2f}",
                    f"{med['optimum work']:.2f}",
                    f"{med['hiercompile imports']:.2f}",
                    f"{med['hiercompile work']:.2f}",
                    f"{med['hiercompile work'] / med['optimum work']:.2f}x",
                ]
            )
    version = subprocess.run(
        [str(python), "-c", "import optimum.onnx, transformers; print(transformers.__version__)"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    text = (
        f"Wall seconds of each command in a fresh process, medians of {ns.runs} alternating runs; ratio: the median "
        f"of the rounds' ratios (hiercompile's seconds over optimum's, run one after the other); optimum-onnx in "
        f"its own venv (transformers {version}), validating by default.\n\n"
        + markdown_table(
            [
                "checkpoint (task)",
                "optimum-cli s",
                "hiercompile s",
                "hiercompile --validate s",
                "ratio",
                "optimum: imports s",
                "work s",
                "hiercompile: imports s",
                "work s",
                "work ratio",
            ],
            rows,
        )
    )
    write_result("optimum_cli.md", text)


if __name__ == "__main__":
    main()
