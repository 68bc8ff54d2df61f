"""The package knows no model family: its source names none (docs/tags.md, the design's central promise).

Encoder and decoder are roles, not families: transformers (``get_encoder``) and optimum
(``encoder_model``, ``decoder_model``) name a sequence-to-sequence model's two halves so,
whatever the family.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILY = re.compile(
    r"(?i)(?<![a-z])(bert|roberta|gpt|llama|qwen|mistral|phi|t5|vit|convnext|resnet|segformer|whisper|clip|"
    r"attention|layer|transformer\b)"
)
# Hugging Face's input names and cache attributes are conventions shared by every family, not a family.
INPUT_NAMES = re.compile(r"\w*(attention_mask|self_attention_cache|cross_attention_cache)\b|\blayers\\?\.")


def test_package_source_names_no_model_family():
    offenders = []
    for path in sorted([*ROOT.glob("hiercompile/**/*.py"), *ROOT.glob("passes/*.py")]):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if FAMILY.search(INPUT_NAMES.sub("", line)):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_check_catches_a_family_name():
    assert FAMILY.search("if 'Bert' in type(m).__name__:")
    assert FAMILY.search("skip_attention = True")
    assert not FAMILY.search(INPUT_NAMES.sub("", "inputs['attention_mask'] = ones"))
