"""Tiny configurations of many architectures (random weights), built the same generic way."""

from __future__ import annotations

import torch
from torch import nn

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TOKENS = {"vocab_size": 1000, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
DECODER = {**SMALL, **TOKENS, "num_key_value_heads": 1}
IMAGE = {"image_size": 32}
T5_SMALL = {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "d_kv": 16}
STAGES = {"hidden_sizes": [8, 16, 32, 64], "depths": [1, 1, 1, 1], **IMAGE}

# name -> (transformers class, config class, config kwargs)
ZOO: dict[str, tuple[str, str, dict]] = {
    "bert": ("BertModel", "BertConfig", {**SMALL, **TOKENS}),
    "roberta": ("RobertaModel", "RobertaConfig", {**SMALL, **TOKENS}),
    "gpt2": ("GPT2Model", "GPT2Config", {"n_embd": 32, "n_layer": 2, "n_head": 2, **TOKENS}),
    "llama": ("LlamaModel", "LlamaConfig", DECODER),
    "qwen2": ("Qwen2Model", "Qwen2Config", DECODER),
    "mistral": ("MistralModel", "MistralConfig", DECODER),
    "phi3": ("Phi3Model", "Phi3Config", DECODER),
    "t5": ("T5Model", "T5Config", {**T5_SMALL, "num_layers": 2, **TOKENS}),
    "mt5": ("MT5Model", "MT5Config", {**T5_SMALL, **TOKENS}),
    "mixtral": (  # mixture of experts through transformers' own grouped-matmul op
        "MixtralModel",
        "MixtralConfig",
        {**DECODER, "num_hidden_layers": 1, "num_local_experts": 4, "num_experts_per_tok": 2},
    ),
    "mamba": ("MambaModel", "MambaConfig", {"hidden_size": 32, "num_hidden_layers": 2, "state_size": 4, **TOKENS}),
    "vit": ("ViTModel", "ViTConfig", {**SMALL, **IMAGE, "patch_size": 8}),
    "convnext": ("ConvNextModel", "ConvNextConfig", STAGES),
    "mobilevit": (  # depthwise convolutions with residual sums, and attention over patches
        "MobileViTModel",
        "MobileViTConfig",
        {
            **IMAGE,
            "hidden_sizes": [16, 24, 32],
            "neck_hidden_sizes": [8, 8, 16, 16, 24, 32, 48],
            "num_attention_heads": 2,
            "patch_size": 2,
        },
    ),
    "resnet": ("ResNetModel", "ResNetConfig", {**STAGES, "embedding_size": 8}),
    "segformer": (
        "SegformerModel",
        "SegformerConfig",
        {**STAGES, "num_attention_heads": [1, 1, 2, 2], "decoder_hidden_size": 32},
    ),
    "whisper": (
        "WhisperModel",
        "WhisperConfig",
        {
            "d_model": 32,
            "encoder_layers": 1,
            "decoder_layers": 1,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64,
            "num_mel_bins": 16,
            "max_source_positions": 16,
            "max_target_positions": 32,
            "decoder_start_token_id": 1,
            **TOKENS,
        },
    ),
    "clip": (
        "CLIPModel",
        "CLIPConfig",
        {
            "text_config": {**SMALL, "num_hidden_layers": 1, **TOKENS},
            "vision_config": {**SMALL, "num_hidden_layers": 1, **IMAGE, "patch_size": 8},
            "projection_dim": 16,
        },
    ),
}


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width)

    def forward(self, x):
        return torch.relu(self.norm(self.conv(x))) + x


class Gated(nn.Module):
    """Control flow: torch.cond picks one of two blocks by the input's sign."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = Block(8)
        self.neg = Block(8)

    def forward(self, x):
        return torch.cond(x.mean() > 0, lambda x: self.pos(x), lambda x: self.neg(x) * -1, (x,))


class PlainNet(nn.Module):
    """A plain torch model: no transformers class anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.blocks = nn.Sequential(Block(8), Block(8))
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


class CondNet(PlainNet):
    """A plain torch model with a data-dependent branch written with torch.cond."""

    def __init__(self) -> None:
        super().__init__()
        self.gated = Gated()

    def forward(self, x):
        x = self.gated(self.blocks(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))


class InvertedResidual(nn.Module):
    """A mobile block: expand, depthwise convolution with hard-swish, squeeze-excite gate, project, residual."""

    def __init__(self, width: int, expanded: int) -> None:
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(width, expanded, 1), nn.BatchNorm2d(expanded), nn.Hardswish())
        self.depthwise = nn.Sequential(
            nn.Conv2d(expanded, expanded, 3, padding=1, groups=expanded), nn.BatchNorm2d(expanded), nn.Hardswish()
        )
        self.excite = SqueezeExcite(expanded)
        self.project = nn.Sequential(nn.Conv2d(expanded, width, 1), nn.BatchNorm2d(width))

    def forward(self, x):
        return x + self.project(self.excite(self.depthwise(self.expand(x))))


class SqueezeExcite(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(width, width // 4, 1)
        self.restore = nn.Conv2d(width // 4, width, 1)

    def forward(self, x):
        scale = x.mean(dim=(2, 3), keepdim=True)
        return x * nn.functional.hardsigmoid(self.restore(torch.relu(self.reduce(scale))))


class MobileNet(nn.Module):
    """A plain torch MobileNetV3-style network: depthwise convolutions, hard-swish, squeeze-excite."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.Hardswish())
        self.blocks = nn.Sequential(InvertedResidual(8, 32), InvertedResidual(8, 24))
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(x.mean(dim=(2, 3)))


PLAIN = {"plain": PlainNet, "cond": CondNet, "mobilenet": MobileNet}


def build(name: str) -> tuple[nn.Module, dict]:
    """The model and example inputs (from its signature and config, as the CLI makes them)."""
    torch.manual_seed(0)
    if name in PLAIN:
        return PLAIN[name]().eval(), {"x": torch.randn(1, 3, 16, 16)}
    import transformers

    from hiercompile._hf._models import example_inputs

    model_cls, config_cls, settings = ZOO[name]
    config = getattr(transformers, config_cls)(**settings, use_cache=False)  # caches: the generative export
    model = getattr(transformers, model_cls)(config).eval()
    return model, example_inputs(model, seq_len=8)
