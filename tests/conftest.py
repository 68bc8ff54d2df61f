"""Shared fixtures: small models, one BERT tiny export per session, the SPEC checker."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import hiercompile

SPEC_CHECKER = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "check_spec.py"


class SpecCheckerMissing(UserWarning):
    """../shared/tools/check_spec.py is not beside this checkout (a user's clone): that one check is left out."""


def check_spec(model_path: Path, artifacts: Path | None = None, run: bool = True) -> None:
    """Run ../shared/tools/check_spec.py on a result.

    In a user's clone (no ../shared beside it) only this check is left out, with a
    warning: the calling test goes on with its own checks. ``run=False`` leaves out the
    checker's run, which sets every symbolic dim to 2: a model with a cache needs
    ``total_sequence_length = past_sequence_length + sequence_length`` (its test decodes).
    """
    if not SPEC_CHECKER.is_file():
        warnings.warn(f"{SPEC_CHECKER} not found: SPEC check left out", SpecCheckerMissing, stacklevel=2)
        return
    cmd = [sys.executable, str(SPEC_CHECKER), str(model_path), *(["--run"] if run else [])]
    if artifacts is not None:
        cmd += ["--artifacts", str(artifacts)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_onnx(model_path: Path, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v.numpy() for k, v in inputs.items() if k in names})


def bert_config(layers: int = 2):
    from transformers import BertConfig

    return BertConfig(
        hidden_size=128, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=512, vocab_size=30522
    )


def llama_checkpoint(folder, seed: int = 0):
    """A two-block LLaMA with random weights, saved as ``save_pretrained`` writes it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
        vocab_size=1000,
    )  # fmt: skip
    LlamaForCausalLM(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def stack_export(tmp_path_factory):
    """A plain-torch stack of three blocks (``test_verify.Stack``), exported."""
    from test_verify import Stack

    import hiercompile

    torch.manual_seed(0)
    model, x = Stack().eval(), torch.randn(2, 5, 16)
    out = tmp_path_factory.mktemp("stack")
    hiercompile.export(model, (x,), out)
    return model, x, out


def bert_inputs(seq_len: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "input_ids": torch.randint(0, 1000, (1, seq_len), generator=g),
        "attention_mask": torch.ones(1, seq_len, dtype=torch.long),
    }


@pytest.fixture(scope="session")
def bert_tiny():
    from transformers import BertModel

    torch.manual_seed(0)
    return BertModel(bert_config()).eval()


@pytest.fixture(scope="session")
def bert_export(bert_tiny, tmp_path_factory):
    """BERT tiny exported once; (model, inputs, result, output directory)."""
    out = tmp_path_factory.mktemp("bert_tiny")
    inputs = bert_inputs()
    result = hiercompile.export(bert_tiny, (), out, kwargs=inputs)
    return bert_tiny, inputs, result, out


@pytest.fixture
def fast_paths_on(monkeypatch):
    """A test of a fast path itself runs it, also in the suite run with ``HIERCOMPILE_SAFE=1``."""
    monkeypatch.delenv("HIERCOMPILE_SAFE", raising=False)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test may reach a model hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_ir(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run an onnx_ir model in ONNX Runtime."""
    import onnx_ir as ir

    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)
