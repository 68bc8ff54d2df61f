"""The command line on checkpoints beyond the preset: every expected failure is one line,
every advertised task exports, and no option is silently ignored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_onnx
from hiercompile.passes import get_tags

from hiercompile._cli import main
from hiercompile._hf._tasks import TASKS


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """Tiny checkpoints (random weights) saved as save_pretrained writes them."""
    import transformers as tf

    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    small = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    seq2seq = {
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64,
        "vocab_size": 500,
    }
    models = {
        "bert": tf.BertModel(tf.BertConfig(hidden_size=32, vocab_size=500, max_position_embeddings=64, **small)),
        "clip": tf.CLIPModel(
            tf.CLIPConfig(
                text_config={**small, "hidden_size": 32, "vocab_size": 500, "max_position_embeddings": 32},
                vision_config={**small, "hidden_size": 32, "image_size": 32, "patch_size": 8},
                projection_dim=16,
            )
        ),
        "vit": tf.ViTModel(tf.ViTConfig(hidden_size=32, image_size=32, patch_size=8, **small)),
        "gpt2": tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=64, vocab_size=500)),
        "bart": tf.BartForConditionalGeneration(tf.BartConfig(max_position_embeddings=64, **seq2seq)),
        "whisper": tf.WhisperForConditionalGeneration(
            tf.WhisperConfig(
                num_mel_bins=16,
                max_source_positions=30,
                max_target_positions=40,
                pad_token_id=1,
                bos_token_id=2,
                eos_token_id=2,
                decoder_start_token_id=3,
                suppress_tokens=[],
                begin_suppress_tokens=[],
                **seq2seq,
            )
        ),
        "wav2vec2": tf.Wav2Vec2ForCTC(
            tf.Wav2Vec2Config(
                hidden_size=32,
                conv_dim=(16, 16),
                conv_stride=(5, 2),
                conv_kernel=(10, 3),
                num_feat_extract_layers=2,
                vocab_size=30,
                num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2,
                **small,
            )
        ),
    }
    for name, model in models.items():
        model.save_pretrained(root / name)
    return root


def _one_error_line(capsys, *parts: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err
    return err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{oops", "is not JSON text"),
        (b"[1, 2]", "holds a JSON list, not an object of settings"),
        (bytes(range(128, 256)), "is not JSON text"),
        (b'{"hidden_size": 32}', "names no model_type"),
    ],
    ids=["invalid-json", "a-list", "binary", "no-model-type"],
)
def test_a_broken_config_is_one_line(checkpoints, tmp_path, capsys, content, message):
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints / "bert", folder)
    (folder / "config.json").write_bytes(content)
    assert main(["export", str(folder), str(tmp_path / "out")]) == 1
    _one_error_line(capsys, "config.json", message)
    assert not (tmp_path / "out").exists()


def test_an_unknown_model_type_says_so(checkpoints, tmp_path, capsys):
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints / "bert", folder)
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"model_type": "bert"', '"model_type": "bert-from-the-future"'))
    assert main(["export", str(folder), str(tmp_path / "out")]) == 1
    err = _one_error_line(capsys, "bert-from-the-future", "check config.json's model_type, or upgrade transformers")
    assert "weights" not in err


def test_truncated_weights_are_one_line(checkpoints, tmp_path, capsys):
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints / "bert", folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:2000])
    assert main(["export", str(folder), str(tmp_path / "out")]) == 1
    _one_error_line(capsys, "cannot load", "check that the folder holds the weights")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("name", "seq_len", "limit", "largest"),
    [("gpt2", 62, 64, 61), ("bart", 62, 64, 61), ("whisper", 100, 40, 37)],
)
def test_the_sequence_check_knows_the_cache_and_the_decoders_positions(
    checkpoints, tmp_path, capsys, name, seq_len, limit, largest
):
    """Past + new tokens must fit the positions, and a speech decoder's are its own."""
    out = tmp_path / "out"
    assert main(["export", str(checkpoints / name), str(out), "--seq-len", str(seq_len)]) == 1
    _one_error_line(capsys, f"position limit of {limit}", f"{largest} or less")
    assert not out.exists()


@pytest.mark.slow
def test_the_largest_sequence_the_check_allows_exports(checkpoints, tmp_path):
    assert main(["export", str(checkpoints / "gpt2"), str(tmp_path / "out"), "--seq-len", "61"]) == 0


def test_readers_and_writers_refuse_what_cannot_apply(checkpoints, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", str(checkpoints / "bert"), str(out), "--seq-len", "8"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--depth", "-1"]) == 1
    _one_error_line(capsys, "--depth must be 0 or more")
    folder = tmp_path / "existing"
    folder.mkdir()
    for command in (["extract", str(out), "/BertModel/BertPooler"], ["functionize", str(out / "model.onnx")]):
        assert main([*command, str(folder)]) == 1
        _one_error_line(capsys, "existing is a folder; pass the path of the .onnx file")
    assert list(folder.iterdir()) == []
    assert main(["export", str(checkpoints / "bert"), str(tmp_path / "o2"), "--validate", "--atol", "-1"]) == 1
    _one_error_line(capsys, "--atol must be 0 or more")


def test_options_that_cannot_apply_are_warnings(checkpoints, tmp_path, capsys):
    assert main(["export", str(checkpoints / "bert"), str(tmp_path / "a"), "--dynamic", "height"]) == 0
    assert "warning: no input has the axis height" in capsys.readouterr().err
    assert main(["export", str(checkpoints / "gpt2"), str(tmp_path / "b"), "--dynamic", "batch"]) == 0
    assert "warning: task text-generation-with-past exports every batch and sequence axis dynamic already" in (
        capsys.readouterr().err
    )


def test_every_task_the_cli_lists_has_a_checkpoint_here():
    """The tasks the next test exports from the command line are every task the CLI advertises."""
    assert {task for task, _ in _TASK_CASES} == set(TASKS)


# each task with a checkpoint whose model type has that head
_TASK_CASES = [
    ("feature-extraction", "bert"),
    ("fill-mask", "bert"),
    ("text-classification", "bert"),
    ("token-classification", "bert"),
    ("image-classification", "vit"),
    ("text-generation", "gpt2"),
    ("text-generation-with-past", "gpt2"),
    ("text2text-generation", "bart"),
    ("text2text-generation-with-past", "bart"),
    ("automatic-speech-recognition", "whisper"),
    ("automatic-speech-recognition-with-past", "whisper"),
    ("automatic-speech-recognition-ctc", "wav2vec2"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("task", "name"), _TASK_CASES)
def test_every_listed_task_exports_and_validates_from_the_cli(checkpoints, tmp_path, task, name):
    out = tmp_path / "out"
    assert main(["export", str(checkpoints / name), str(out), "--task", task, "--seq-len", "8", "--validate"]) == 0
    assert list(out.rglob("model.onnx")) or list(out.rglob("*_model/model.onnx"))


def test_ctc_audio_input_is_made_from_the_config(checkpoints, tmp_path):
    from transformers import Wav2Vec2ForCTC

    out = tmp_path / "out"
    assert main(["export", str(checkpoints / "wav2vec2"), str(out), "--task", "automatic-speech-recognition-ctc"]) == 0
    model = Wav2Vec2ForCTC.from_pretrained(checkpoints / "wav2vec2").eval()
    audio = torch.randn(1, 170, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(input_values=audio).logits.numpy()
    (got,) = run_onnx(out / "model.onnx", {"input_values": audio})
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.slow
def test_dynamic_batch_keeps_texts_and_images_apart(checkpoints, tmp_path):
    """CLIP: 2 texts against 3 images, from a model exported with one text and one image."""
    from transformers import CLIPModel

    out = tmp_path / "out"
    assert main(["export", str(checkpoints / "clip"), str(out), "--dynamic", "batch", "--seq-len", "7"]) == 0
    model = CLIPModel.from_pretrained(checkpoints / "clip").eval()
    g = torch.Generator().manual_seed(0)
    feeds = {
        "input_ids": torch.randint(0, 500, (2, 7), generator=g),
        "attention_mask": torch.ones(2, 7, dtype=torch.long),
        "pixel_values": torch.randn(3, 3, 32, 32, generator=g),
    }
    with torch.no_grad():
        want = model(**feeds).logits_per_image.numpy()
    got = run_onnx(out / "model.onnx", feeds)[0]
    assert got.shape == want.shape == (3, 2)
    np.testing.assert_allclose(got, want, atol=1e-4)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_no_command_writes_over_a_users_model(checkpoints, tmp_path, capsys):
    """verify, extract, functionize and retag never write over what they were not asked to."""
    seq2seq, out = tmp_path / "bart_onnx", tmp_path / "bert_onnx"
    assert main(["export", str(checkpoints / "bart"), str(seq2seq), "--seq-len", "8"]) == 0
    assert main(["export", str(checkpoints / "bert"), str(out), "--seq-len", "8"]) == 0
    shipped = tmp_path / "shipped" / "q.onnx"  # a file of the user's, as a quantizer would write it
    shipped.parent.mkdir()
    shipped.write_bytes((out / "model.onnx").read_bytes())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    before = {folder: _tree(folder) for folder in (seq2seq, out, shipped.parent, mine)}
    capsys.readouterr()

    assert main(["verify", str(checkpoints / "bart"), str(seq2seq), "--seq-len", "8"]) == 0  # each file
    capsys.readouterr()
    assert main(["verify", str(checkpoints / "bert"), str(mine), "--seq-len", "8"]) == 1
    _one_error_line(capsys, "holds files but no model.onnx", "never exports over files")
    assert main(["verify", str(checkpoints / "bert"), str(shipped), "--seq-len", "8"]) == 0  # verified as it is
    capsys.readouterr()
    for command in (
        ["extract", str(out), "/BertModel/BertPooler", str(out / "model.onnx")],
        ["functionize", str(out / "model.onnx"), str(out / "model.onnx")],
        ["retag", str(shipped), "--from", str(out), "-o", str(shipped)],
        ["extract", str(out), "/BertModel/BertPooler", str(out / "hierarchy.json")],
    ):
        assert main(command) == 1, command
        _one_error_line(capsys, "--force")
    after = {folder: _tree(folder) for folder in before}
    for folder, files in before.items():  # every file as it was; verify added its results beside the models
        changed = {name for name in files if after[folder][name] != files[name]}
        assert all(name.endswith("manifest.json") for name in changed), changed  # it now lists verify.json
        added = set(after[folder]) - set(files)
        assert all(name.endswith("verify.json") for name in added), added
    # asked for with --force, it is written
    assert main(["extract", str(out), "/BertModel/BertPooler", str(shipped), "--force"]) == 0
    assert shipped.read_bytes() != before[shipped.parent]["q.onnx"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2", "bart", "whisper"])
def test_verify_and_profile_work_on_every_default_export(checkpoints, tmp_path, capsys, name):
    """A decoder with its cache and each sequence-to-sequence file, checked against the PyTorch
    entry point it came from; profile's default sizes fit them (the mask spans past + new tokens)."""
    import json

    from hiercompile._hf._pretrained import verify_pretrained

    out = tmp_path / "out"
    assert main(["export", str(checkpoints / name), str(out), "--seq-len", "8"]) == 0
    reports = verify_pretrained(str(checkpoints / name), out, seq_len=8)
    assert len(reports) == (1 if name == "gpt2" else 3)
    for part, report in reports.items():
        statuses = {c.status for c in report.modules}
        assert report.ok and not statuses & {"diverged", "not produced"}, (part, report.summary())
        # a file runs part of the model (the encoder alone): the modules it runs match
        ran = [c for c in report.modules if c.status != "no tensor output"]
        assert sum(c.status == "matched" for c in ran) >= max(3, len(ran) // 2), (part, report.modules)
        folder = out if part == "model" else out / part
        written = json.loads((folder / "verify.json").read_text())
        assert written["first_divergence"] is None and set(written["modules"]) == {c.tag for c in report.modules}
        capsys.readouterr()
        assert main(["profile", str(folder), "--runs", "2"]) == 0, capsys.readouterr().err
        profiled = json.loads((folder / "profile.json").read_text())
        assert profiled["kernels"] == sum(m["ops"] for m in profiled["modules"].values()) + len(
            profiled.get("unattributed", [])
        )


@pytest.mark.slow
def test_verify_from_tells_a_tools_own_error_from_what_its_inputs_bring(checkpoints, tmp_path, capsys):
    """verify --from on what ONNX Runtime made of a decoder with its cache: its optimizer's
    fusions match (a block whose last sum went into a SkipLayerNormalization is "fused", not
    "diverged"); with one block's projections quantized, that block is the first divergence and
    the modules after it only inherit."""
    import sys

    from onnxruntime.quantization import quantize_dynamic

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from deploy_tools import TOOLS

    import hiercompile
    from hiercompile._hf._pretrained import verify_pretrained

    torch.manual_seed(0)
    model = transformers_gpt2(layers=3)
    model.save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "out"
    assert main(["export", str(tmp_path / "ckpt"), str(out), "--seq-len", "8"]) == 0
    optimized = tmp_path / "optimized.onnx"
    TOOLS["ORT optimized, ALL"](out / "model.onnx", optimized)
    capsys.readouterr()
    nd = tmp_path / "nd.json"
    argv = [
        "verify",
        str(tmp_path / "ckpt"),
        str(optimized),
        "--from",
        str(out),
        "--seq-len",
        "8",
        "--node-data",
        str(nd),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "every module matched" in printed.err and "own ops' error" in printed.out
    report = verify_pretrained(str(tmp_path / "ckpt"), out, seq_len=8, single_file=optimized, source=out)["model"]
    assert "fused" in {c.status for c in report.modules} and report.ok
    # Model Explorer's overlay: the shipped model's nodes, each with its module's own error
    results = json.loads(nd.read_text())["main_graph"]["results"]
    retagged = hiercompile.retag(optimized, out).model
    owner = {n.name: get_tags(n)[0] for n in retagged.graph if get_tags(n)}
    errors = {c.tag: c.max_abs_diff if c.own_abs_diff is None else c.own_abs_diff for c in report.modules}
    assert results and set(results) <= set(owner)
    for name, entry in results.items():
        if owner[name] in errors and report.by_tag()[owner[name]].status in ("matched", "inherited"):
            assert entry["value"] == pytest.approx(errors[owner[name]], abs=1e-6)

    block = "/GPT2LMHeadModel/GPT2Model/GPT2Block.1"
    retriever = hiercompile.HierarchyRetriever(out)
    gemms = [n for n in retriever.get_nodes_by_module(block) if retriever.model.graph.node(n).op_type == "Gemm"]
    quantized = tmp_path / "q.onnx"  # the quantizer turns each Gemm into a MatMul named after it first
    quantize_dynamic(str(out / "model.onnx"), str(quantized), nodes_to_quantize=[f"{n}_MatMul" for n in gemms])
    before = quantized.read_bytes()
    report = verify_pretrained(str(tmp_path / "ckpt"), out, seq_len=8, single_file=quantized, source=out)["model"]
    checks = report.by_tag()
    assert report.first_divergence.startswith(block), report.summary()
    assert checks[f"{block}/GPT2MLP/NewGELUActivation"].status == "inherited"
    assert checks["/GPT2LMHeadModel/GPT2Model/GPT2Block.2/GPT2MLP/NewGELUActivation"].status == "inherited"
    assert all(c.status in ("matched", "fused") for t, c in checks.items() if "GPT2Block.0" in t)
    assert quantized.read_bytes() == before
    assert main(["verify", str(tmp_path / "ckpt"), str(quantized), "--from", str(tmp_path / "nowhere")]) == 1
    assert "--from" in capsys.readouterr().err


def transformers_gpt2(layers: int):
    import transformers as tf

    return tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=32, n_layer=layers, n_head=2, n_positions=64, vocab_size=500))
