"""Local model folders for tests: the tiny-llama config with saved weights and a word-level tokenizer.

No weights can be downloaded in CI, so a "pretrained" model is one saved here with `save_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path

from pytest_llm_energy.core.models import packaged_config_dir


def write_model_folder(folder: Path, *, tokenizer: bool = True, weights: bool = True, seed: int = 0) -> Path:
    """A from_pretrained-readable folder of the tiny-llama architecture; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((packaged_config_dir("tiny-llama") / "config.json").read_text())
    if weights:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
        model.save_pretrained(folder)
    else:
        (folder / "config.json").write_text(json.dumps(config))
    if tokenizer:
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        # One word per id, "t<id>", so any id decodes and any "t<id>" text encodes to exactly one token.
        vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, config["vocab_size"])}}
        word_level = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        word_level.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="<unk>", bos_token="<s>",
                                eos_token="</s>", pad_token="<unk>").save_pretrained(folder)
    return folder
