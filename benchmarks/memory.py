"""Peak memory of exporting a checkpoint folder: weights streamed vs loaded.

Writes a LLaMA-shaped checkpoint with random weights, shard by shard (never the whole
model in memory), then exports it, each approach once in its own process:

- ``plain``: ``from_pretrained`` and ``torch.onnx.export`` (dynamo, no cache), external data;
- ``loaded``: ``hiercompile.export_pretrained`` with the weights loaded;
- ``streamed``: ``hiercompile.export_pretrained``, the parameters on the meta device and
  each weight copied from the safetensors shards into the external data file.

Peak RSS of each process (``ru_maxrss``) against the target 1.5 GiB + 10% of the
checkpoint. ``--size large`` is a 6.7 B-parameter checkpoint (27 GB in fp32), larger than
this machine's memory: only the streamed export runs on it (it needs 2 x 27 GB of disk).

    python benchmarks/memory.py [--size 2gib|large] [--dir /tmp/checkpoints]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from _measure import markdown_table, quiet, write_result

import hiercompile

SIZES = {  # LLaMA shapes; fp32
    "2gib": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 8, "num_attention_heads": 16},
    "large": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32},
}
SHARD_BYTES = 2 << 30


def write_checkpoint(folder: Path, size: str) -> int:
    """A checkpoint of random weights written shard by shard; returns its bytes."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, LlamaConfig

    from hiercompile._exporter._weights import empty_model

    config = LlamaConfig(vocab_size=32000, tie_word_embeddings=False, dtype="float32", **SIZES[size])
    config.architectures = ["LlamaForCausalLM"]
    shapes = {n: p.shape for n, p in empty_model(AutoModelForCausalLM.from_config, config).named_parameters()}
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    generator = torch.Generator().manual_seed(0)
    weight_map: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}

    def flush() -> None:
        name = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
        save_file(shard, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        shard.clear()

    for name, shape in shapes.items():
        shard[name] = torch.empty(shape).normal_(0, 0.02, generator=generator)
        if sum(t.nbytes for t in shard.values()) >= SHARD_BYTES:
            flush()
    if shard:
        flush()
    total = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return total


def child(approach: str, folder: Path, out: Path) -> dict:
    quiet()
    out.mkdir(parents=True)
    start = time.perf_counter()
    if approach == "plain":
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto").eval()
        ids = torch.randint(0, 32000, (1, 16))
        with torch.no_grad():
            program = torch.onnx.export(model, (), kwargs={"input_ids": ids, "use_cache": False}, dynamo=True)
            program.save(out / "model.onnx", external_data=True)
    else:
        hiercompile.export_pretrained(str(folder), out, stream_weights=approach == "streamed")
    seconds = time.perf_counter() - start
    data = sum(p.stat().st_size for p in out.rglob("*.data"))
    return {"seconds": seconds, "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "data": data}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=list(SIZES), default="2gib")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/hiercompile-memory"))
    parser.add_argument("--child", choices=["write", "plain", "loaded", "streamed"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child == "write":
        print(json.dumps(write_checkpoint(ns.folder, ns.size)))
        return
    if ns.child:
        print(json.dumps(child(ns.child, ns.folder, ns.out)))
        return
    folder = ns.dir / f"llama-{ns.size}"
    shutil.rmtree(ns.dir, ignore_errors=True)
    start = time.perf_counter()
    # every step in a process of its own: Linux carries a process's peak RSS over to the processes it forks
    cmd = [sys.executable, __file__, "--child", "write", "--size", ns.size, "--folder", str(folder)]
    size = json.loads(subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout)
    written = time.perf_counter() - start
    print(f"checkpoint: {size / 2**30:.2f} GiB written in {written:.0f} s", file=sys.stderr)
    approaches = ["streamed"] if ns.size == "large" else ["plain", "loaded", "streamed"]
    target = 1.5 + 0.1 * size / 2**30
    rows = []
    for approach in approaches:
        out = ns.dir / approach
        cmd = [sys.executable, __file__, "--child", approach, "--folder", str(folder), "--out", str(out)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(approach, r, file=sys.stderr)
        shutil.rmtree(out)  # the disk holds one copy of the weights beside the checkpoint
        name = {"plain": "from_pretrained + torch.onnx.export", "loaded": "hiercompile, weights loaded"}.get(
            approach, "hiercompile, weights streamed"
        )
        rows.append(
            [
                name,
                f"{r['seconds']:.0f}",
                f"{r['peak_gib']:.2f}",
                f"{r['peak_gib'] / (size / 2**30):.2f}",
                "yes" if r["peak_gib"] <= target else "no",
                f"{r['data'] / 2**30:.2f}",
            ]
        )
    shutil.rmtree(ns.dir)
    text = (
        f"LLaMA-shaped checkpoint, {size / 2**30:.2f} GiB of fp32 safetensors shards (random weights; "
        f"{', '.join(f'{k} {v}' for k, v in SIZES[ns.size].items())}), default task (text-generation-with-past "
        "for hiercompile, no cache for plain); each approach once in its own process; peak RSS is the "
        f"process's ru_maxrss. Target: 1.5 GiB + 10% of the checkpoint = {target:.2f} GiB. torch "
        f"{torch.__version__}, hiercompile {hiercompile.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} threads.\n\n"
        + markdown_table(
            ["approach", "wall s", "peak RSS GiB", "peak / checkpoint", "within target", "external data GiB"], rows
        )
    )
    write_result(f"memory_{ns.size}.md", text)


if __name__ == "__main__":
    main()
