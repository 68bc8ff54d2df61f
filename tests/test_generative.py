"""Generative exports: tasks, a decoder with its cache, encoder-decoder files, validation.

The checks that matter: greedy decoding in ONNX Runtime, feeding each step's ``present.*``
back as ``past_key_values.*`` from an empty past, gives transformers' ``generate`` tokens;
every file carries the whole model's tags.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import check_spec, llama_checkpoint
from hiercompile.passes import get_tags

import hiercompile
from hiercompile._cli import main
from hiercompile._hf._tasks import infer_task
from hiercompile._hf._validate import greedy_decode
from hiercompile._ort import session


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = llama_checkpoint(tmp_path_factory.mktemp("llama"))
    (folder / "tokenizer.json").write_text("{}")  # a runtime's file: copied beside the model
    out = folder.parent / "llama_onnx"
    return folder, out, hiercompile.export_pretrained(str(folder), out, validate_outputs=True)


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(2)
    config = T5Config(
        d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16, vocab_size=1000, decoder_start_token_id=0,
        initializer_factor=3.0,  # random weights that do not repeat one token
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("t5")
    T5ForConditionalGeneration(config).eval().save_pretrained(folder)
    out = folder.parent / "t5_onnx"  # logits of tens with these weights: a looser tolerance
    return folder, out, hiercompile.export_pretrained(str(folder), out, validate_outputs=True, atol=1e-3)


def test_tasks_come_from_the_architecture_generation_first():
    assert infer_task({"architectures": ["LlamaForCausalLM"]}) == "text-generation-with-past"
    assert infer_task({"architectures": ["BartForConditionalGeneration"]}) == "text2text-generation-with-past"
    assert (
        infer_task({"architectures": ["WhisperForConditionalGeneration"]}) == "automatic-speech-recognition-with-past"
    )
    assert infer_task({"architectures": ["BertForSequenceClassification"]}) == "text-classification"
    assert infer_task({"architectures": ["ViTForImageClassification"]}) == "image-classification"
    assert infer_task({"model_type": "bert"}) == "feature-extraction"


def test_a_task_the_model_type_lacks_is_one_line_before_loading(tmp_path, capsys):
    assert main(["export", "bert-tiny", str(tmp_path / "o"), "--task", "text2text-generation"]) == 1
    err = capsys.readouterr().err
    assert "task 'text2text-generation' needs a head that model type 'bert' does not have" in err
    assert "text-classification" in err and "Traceback" not in err
    assert main(["export", "bert-tiny", str(tmp_path / "o"), "--task", "translation"]) == 1
    assert "unknown task 'translation'; choose from feature-extraction" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_decoder_with_past_names_and_files(llama):
    _, out, result = llama
    assert result.task == "text-generation-with-past" and list(result.results) == ["model"]
    graph = result.results["model"].model.graph
    inputs = {v.name: [str(d) for d in v.shape] for v in graph.inputs}
    assert list(inputs)[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert inputs["attention_mask"] == ["batch_size", "total_sequence_length"]
    assert inputs["past_key_values.1.value"] == ["batch_size", "1", "past_sequence_length", "16"]
    outputs = {v.name: [str(d) for d in v.shape] for v in graph.outputs}
    assert list(outputs) == ["logits", *(f"present.{n}.{k}" for n in range(2) for k in ("key", "value"))]
    assert outputs["present.0.key"][2] == "past_sequence_length + sequence_length"
    assert result.results["model"].coverage == 1.0
    written = {p.name for p in out.iterdir()}
    assert {"model.onnx", "config.json", "generation_config.json", "tokenizer.json"} <= written
    assert "model.safetensors" not in written
    check_spec(out / "model.onnx", out, run=False)  # the run is the decode below


def test_decoder_with_past_decodes_as_generate(llama):
    from transformers import AutoModelForCausalLM

    folder, _, result = llama
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = torch.randint(3, 1000, (2, 5), generator=torch.Generator().manual_seed(1))
    want = model.generate(
        input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6, min_new_tokens=6, do_sample=False
    )[:, prompt.shape[1] :]
    sessions = {"model": session(result.results["model"].model)}
    tokens, _ = greedy_decode(sessions, "decoder", {"input_ids": prompt.numpy()}, steps=6)
    assert len(set(tokens.ravel().tolist())) > 2  # a decode worth comparing
    np.testing.assert_array_equal(tokens, want.numpy())
    assert result.validation.worst[1] <= 1e-4 and result.validation.tokens is not None


def test_seq2seq_files_share_the_models_tags_and_decode_as_generate(t5):
    from transformers import AutoModelForSeq2SeqLM

    folder, out, result = t5
    assert list(result.results) == ["encoder_model", "decoder_model", "decoder_with_past_model"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["components"] == sorted(result.results) and "config.json" in manifest["files"]
    hierarchies = [json.loads((out / name / "hierarchy.json").read_text()) for name in result.results]
    assert all(
        {t: h[t]["class"] for t in h} == {t: hierarchies[0][t]["class"] for t in hierarchies[0]} for h in hierarchies
    )
    root = "/T5ForConditionalGeneration"
    for name, part in result.results.items():
        tags = {t for n in part.model.graph for t in get_tags(n)}
        stack = "T5Stack.encoder" if name == "encoder_model" else "T5Stack.decoder"
        assert tags and all(t == root or t.startswith(f"{root}/") for t in tags)
        assert any(t.startswith(f"{root}/{stack}/T5Block.1") for t in tags)
        other = "T5Stack.decoder" if name == "encoder_model" else "T5Stack.encoder"
        assert not any(t.startswith(f"{root}/{other}") for t in tags), name
        check_spec(out / name / "model.onnx", out / name, run=name == "encoder_model")
    with_past = {v.name for v in result.results["decoder_with_past_model"].model.graph.inputs}
    assert "past_key_values.1.encoder.value" in with_past and "encoder_hidden_states" not in with_past
    past_outputs = [v.name for v in result.results["decoder_with_past_model"].model.graph.outputs]
    assert past_outputs == ["logits", *(f"present.{n}.decoder.{k}" for n in range(2) for k in ("key", "value"))]

    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    ids = torch.randint(3, 1000, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    want = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    sessions = {name: session(part.model) for name, part in result.results.items()}
    inputs = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    tokens, _ = greedy_decode(sessions, "seq2seq", inputs, steps=5, start=0)
    assert len(set(tokens.ravel().tolist())) > 2
    np.testing.assert_array_equal(tokens, want[:, 1:].numpy())


def test_validation_fails_beyond_the_tolerance_and_stale_components_go(t5, tmp_path):
    folder = t5[0]
    with pytest.raises(hiercompile.ValidationError, match=r"differs from PyTorch by .* more than --atol 0"):
        hiercompile.export_pretrained(
            str(folder), tmp_path, task="text2text-generation", atol=0.0, validate_outputs=True
        )
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["decoder_model", "encoder_model"]
    hiercompile.export_pretrained(str(folder), tmp_path, task="feature-extraction")  # one model: folders go
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]
    assert (tmp_path / "model.onnx").is_file()


def test_cli_exports_with_a_task_and_validates(llama, tmp_path, capsys):
    folder, _, _ = llama
    code = main(["export", str(folder), str(tmp_path), "--task", "text-generation", "--validate", "--atol", "1e-4"])
    assert code == 0
    err = capsys.readouterr().err
    assert "task: text-generation" in err and "validated against PyTorch: largest difference" in err
    names = [i.name for i in session_of(tmp_path / "model.onnx").get_inputs()]
    assert names == ["input_ids", "attention_mask"]  # no cache without -with-past


def session_of(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_streamed_weights_make_the_same_model_without_loading_it(llama, tmp_path, monkeypatch):
    import onnx_ir as ir
    from transformers import AutoModelForCausalLM, PreTrainedModel

    folder, loaded_out, _ = llama

    def refuse(*args, **kwargs):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(PreTrainedModel, "from_pretrained", refuse)
    result = hiercompile.export_pretrained(str(folder), tmp_path, stream_weights=True)
    monkeypatch.undo()
    assert "streamed" in result.source and result.results["model"].coverage == 1.0
    assert (tmp_path / "model.onnx.data").is_file()  # weights streamed go to external data
    streamed = ir.load(tmp_path / "model.onnx").graph.initializers
    want = ir.load(loaded_out / "model.onnx").graph.initializers
    assert sorted(streamed) == sorted(want)
    for name, value in want.items():
        np.testing.assert_array_equal(streamed[name].const_value.numpy(), value.const_value.numpy(), err_msg=name)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = torch.randint(3, 1000, (2, 5), generator=torch.Generator().manual_seed(3))
    want_tokens = model.generate(
        input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=5, min_new_tokens=5, do_sample=False
    )[:, prompt.shape[1] :]
    tokens, _ = greedy_decode({"model": session(tmp_path / "model.onnx")}, "decoder", {"input_ids": prompt.numpy()}, 5)
    np.testing.assert_array_equal(tokens, want_tokens.numpy())
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors"] == []


def test_meta_parameters_need_their_weights_and_the_checkpoint_must_hold_them(llama, tmp_path):
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from hiercompile._exporter._weights import empty_model

    folder, _, _ = llama
    model = empty_model(AutoModelForCausalLM.from_config, AutoConfig.from_pretrained(folder)).eval()
    ids = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(hiercompile.InputError, match=r"parameters of LlamaForCausalLM are on the meta device"):
        hiercompile.export(model, (ids,), tmp_path / "a")
    real = AutoModelForCausalLM.from_pretrained(folder).eval()
    with pytest.raises(hiercompile.InputError, match=r"LlamaForCausalLM has none"):
        hiercompile.export(real, (ids,), tmp_path / "b", weights=folder)
    partial = tmp_path / "partial"
    partial.mkdir()
    state = {k: v for k, v in real.state_dict().items() if "layers.1." not in k}
    save_file(state, partial / "model.safetensors")
    with pytest.raises(hiercompile.InputError, match=r"do not hold 9 weights of LlamaForCausalLM \(model.layers.1"):
        hiercompile.export(model, (ids,), tmp_path / "c", weights=partial)
    assert not (tmp_path / "c").exists()
    result = hiercompile.export(model, (ids,), weights=folder)  # the buffers it computes are real again after
    assert all(not b.is_meta for b in model.buffers()) and result.coverage == 1.0


def test_streaming_needs_a_folder_of_safetensors(tmp_path, capsys):
    assert main(["export", "bert-tiny", str(tmp_path / "out"), "--stream-weights"]) == 1
    err = capsys.readouterr().err
    assert "error: weights stream only from a folder of safetensors files, and bert-tiny is a preset" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_an_interrupted_seq2seq_export_leaves_no_file(t5, tmp_path, monkeypatch):
    """Ctrl-C while the last file is written: no encoder_model/ or decoder_model/ appears,
    and an earlier export in the folder stays as it was."""
    from hiercompile._exporter import _result

    folder = t5[0]
    out = tmp_path / "out"
    hiercompile.export_pretrained(str(folder), out, task="text2text-generation")
    before = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    real = _result.json_writer

    def interrupted(obj):
        def write(path):
            if path.parent.name == "decoder_with_past_model":
                raise KeyboardInterrupt
            real(obj)(path)

        return write

    monkeypatch.setattr(_result, "json_writer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        hiercompile.export_pretrained(str(folder), out, task="text2text-generation-with-past")
    after = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before and not list(out.glob(".hiercompile-*"))
    with pytest.raises(KeyboardInterrupt):
        hiercompile.export_pretrained(str(folder), tmp_path / "new", task="text2text-generation-with-past")
    assert not (tmp_path / "new").exists()


def test_the_cache_is_passed_by_the_name_transformers_takes(tmp_path):
    """transformers 5.25 takes the cache as ``cache`` and warns for ``past_key_values``; older
    versions take ``past_key_values``: the export and its validation use the model's own name,
    and the ONNX inputs keep optimum's ``past_key_values.*``."""
    import warnings

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=64, vocab_size=500)).save_pretrained(folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = hiercompile.export_pretrained(str(folder), tmp_path / "out", validate_outputs=True)
    deprecations = [str(w.message) for w in caught if "deprecated" in str(w.message) and "cache" in str(w.message)]
    assert not deprecations
    names = [v.name for v in done.results["model"].model.graph.inputs]
    assert "past_key_values.0.key" in names and "past_key_values.0.value" in names
    assert done.validation is not None


def test_a_report_names_the_file_of_several_it_describes(t5, tmp_path):
    import shutil

    from hiercompile._cli import main

    out = tmp_path / "out"
    shutil.copytree(t5[1], out)
    assert main(["report", str(out)]) == 1  # the top folder: which subfolder to pass
    path = hiercompile.report(out / "decoder_with_past_model")
    assert "<h1>T5ForConditionalGeneration: decoder_with_past_model/model.onnx</h1>" in path.read_text()
