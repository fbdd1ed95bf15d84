"""Model specs: names, folders and hub ids resolve to the right source and weights; packaged configs are right."""

from __future__ import annotations

import json

import pytest

from pytest_llm_energy.core.errors import BackendError, EnergyUsageError
from pytest_llm_energy.core.models import (
    PACKAGED_MODELS,
    ModelSpec,
    model_parameter_count,
    packaged_config_dir,
    resolve_model,
)

# Published totals (embeddings included), the numbers the model cards and `num_parameters()` give.
PUBLISHED_PARAMETERS = {"llama-3.1-8b": 8_030_261_248, "llama-3.2-1b": 1_235_814_400,
                        "qwen2.5-0.5b": 494_032_768}


@pytest.mark.parametrize("name", PACKAGED_MODELS)
def test_packaged_names_resolve_to_their_config_with_random_weights(name):
    spec = resolve_model(name)
    assert (spec.source, spec.name, spec.random_weights) == ("packaged", name, True)
    assert spec.local_folder() == packaged_config_dir(name)
    assert spec.config_dict()["vocab_size"] == spec.vocab_size
    # no path of this machine in what a baseline keeps
    assert spec.describe() == {"name": name, "source": "packaged", "reference": name, "weights": "random"}
    assert not spec.has_tokenizer


def test_packaged_model_cannot_have_pretrained_weights():
    with pytest.raises(EnergyUsageError, match="always runs with random weights"):
        resolve_model("llama-3.2-1b", random_weights=False)


def test_unknown_bare_name_lists_the_packaged_names():
    with pytest.raises(EnergyUsageError) as error:
        resolve_model("llama-7b")
    assert "llama-7b" in str(error.value)
    for name in PACKAGED_MODELS:
        assert name in str(error.value)


def test_missing_folder_is_a_usage_error(tmp_path):
    with pytest.raises(EnergyUsageError, match="does not exist"):
        resolve_model(str(tmp_path / "no-such-model"))


def test_folder_without_config_is_a_usage_error(tmp_path):
    with pytest.raises(EnergyUsageError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_local_folder_is_pretrained_unless_random_is_asked(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 1000}))
    assert resolve_model(str(tmp_path)) == ModelSpec(str(tmp_path), "path", str(tmp_path.resolve()), False)
    assert resolve_model(str(tmp_path), random_weights=True).random_weights
    forced = resolve_model(f"random:{tmp_path}")
    assert (forced.source, forced.random_weights, forced.weights) == ("path", True, "random")
    assert forced.vocab_size == 1000


def test_hub_id_is_pretrained_and_random_prefix_forces_random_weights():
    assert resolve_model("meta-llama/Llama-3.2-1B") == ModelSpec(
        "meta-llama/Llama-3.2-1B", "hub", "meta-llama/Llama-3.2-1B", False)
    assert resolve_model("random:meta-llama/Llama-3.2-1B").random_weights
    with pytest.raises(EnergyUsageError, match="random"):
        resolve_model("random:meta-llama/Llama-3.2-1B", random_weights=False)


def test_hub_id_missing_from_the_cache_says_what_to_do(tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    spec = resolve_model("nobody-here/not-a-model")
    with pytest.raises(BackendError) as error:
        spec.config_dict()
    message = str(error.value)
    assert "nobody-here/not-a-model" in message and str(tmp_path) in message
    assert "tiny-llama" in message and "local model folder" in message


def test_hub_id_in_the_local_cache_resolves_to_its_snapshot(tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    revision = "0" * 40
    snapshot = tmp_path / "models--acme--tiny" / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text((packaged_config_dir("tiny-llama") / "config.json").read_text())
    (tmp_path / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "models--acme--tiny" / "refs" / "main").write_text(revision)
    spec = resolve_model("random:acme/tiny")
    assert spec.local_folder() == snapshot
    assert spec.vocab_size == 32000


def test_model_specs_are_values():
    spec = resolve_model("tiny-llama")
    assert spec == resolve_model("tiny-llama") and hash(spec) == hash(resolve_model("tiny-llama"))
    assert resolve_model(spec) is spec
    with pytest.raises(AttributeError):
        spec.name = "other"  # frozen: a spec keys the backend pool


def test_config_dict_is_a_fresh_copy():
    spec = resolve_model("tiny-llama")
    spec.config_dict()["vocab_size"] = 1
    assert spec.vocab_size == 32000


@pytest.mark.parametrize("name, fields", [
    ("llama-3.1-8b", {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                      "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                      "rope_theta": 500000.0, "tie_word_embeddings": False}),
    ("llama-3.2-1b", {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "head_dim": 64,
                      "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
                      "tie_word_embeddings": True}),
    ("qwen2.5-0.5b", {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                      "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
                      "tie_word_embeddings": True, "model_type": "qwen2"}),
    # The test model: head_dim 64 (vLLM's CPU attention supports it), 2 layers, a small vocabulary.
    ("tiny-llama", {"head_dim": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "hidden_size": 256, "vocab_size": 32000, "model_type": "llama"}),
])
def test_packaged_configs_have_the_published_shapes(name, fields):
    config = resolve_model(name).config_dict()
    assert {key: config[key] for key in fields} == fields


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_parameter_count_matches_the_published_total(name):
    assert model_parameter_count(resolve_model(name).config_dict()) == PUBLISHED_PARAMETERS[name]


@pytest.mark.parametrize("name", PACKAGED_MODELS)
def test_parameter_count_matches_the_model_transformers_builds(name):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(**resolve_model(name).config_dict())
    with torch.device("meta"):  # shapes only, no memory
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert model_parameter_count(resolve_model(name).config_dict()) == sum(p.numel() for p in model.parameters())
