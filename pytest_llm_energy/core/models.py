"""Model specs: which weights a backend loads (a packaged config with random weights, a local folder, a hub id)."""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import BackendError, EnergyError, EnergyUsageError

CONFIGS_DIR = Path(__file__).parent / "configs"

# Published architectures (config.json as Meta and Qwen released them) plus a 2-layer test model. No weights
# ship with the plugin: a packaged model always has random weights, which cost the same energy per token.
PACKAGED_MODELS = ("llama-3.1-8b", "llama-3.2-1b", "qwen2.5-0.5b", "tiny-llama")
DEFAULT_CPU_MODEL = "tiny-llama"
DEFAULT_GPU_MODEL = "llama-3.2-1b"
SOURCES = ("packaged", "hub", "path")
RANDOM_PREFIX = "random:"

# Files any of which means a folder (or a cached hub snapshot) carries a tokenizer.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclass(frozen=True)
class ModelSpec:
    """One model as a backend should load it; hashable, so it can key the backend pool."""

    name: str
    source: str  # "packaged" | "hub" | "path"
    reference: str  # packaged: the config folder; path: the absolute folder; hub: the repo id
    random_weights: bool

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise EnergyUsageError(f"model source {self.source!r} is not one of {', '.join(SOURCES)}")

    @property
    def weights(self) -> str:
        return "random" if self.random_weights else "pretrained"

    def config_dict(self) -> dict:
        """The Hugging Face config of the model, as a fresh dict (callers may change their copy)."""
        return json.loads(_config_text(self.source, self.reference))

    @property
    def vocab_size(self) -> int:
        config = self.config_dict()
        vocab_size = config.get("vocab_size") or config.get("text_config", {}).get("vocab_size")
        if not vocab_size:
            raise BackendError(f"model {self.name}: its config.json has no vocab_size; cannot synthesize prompts")
        return int(vocab_size)

    def local_folder(self) -> Path:
        """The folder with config.json (and any tokenizer and weights); for a hub id, its cached snapshot.

        Backends load from this folder, so a hub id never reaches the network (BackendError if not cached).
        """
        if self.source in ("packaged", "path"):
            return Path(self.reference)
        return _hub_snapshot(self.reference)

    @property
    def has_tokenizer(self) -> bool:
        """Packaged configs ship none; synthetic prompts are token ids and need none."""
        folder = self.local_folder()
        return any((folder / name).is_file() for name in _TOKENIZER_FILES)

    def describe(self) -> dict:
        """What a record keeps of the model. A folder (packaged or local) by its name only: a path of this
        machine would mean nothing in a committed baseline."""
        if self.source == "hub":
            name = reference = self.reference
        else:
            name, reference = Path(self.name).name, Path(self.reference).name
        return {"name": name, "source": self.source, "reference": reference, "weights": self.weights}


def resolve_model(text: str | ModelSpec, random_weights: bool | None = None) -> ModelSpec:
    """Read a model option: a packaged name, a local folder, a hub id, each optionally prefixed `random:`.

    `random_weights=None` keeps each source's default: random for packaged configs, pretrained otherwise.
    """
    if isinstance(text, ModelSpec):
        if random_weights is None or random_weights == text.random_weights:
            return text
        text = text.reference if text.source != "packaged" else text.name
    raw = str(text).strip()
    forced_random = raw.startswith(RANDOM_PREFIX)
    reference = raw[len(RANDOM_PREFIX):].strip() if forced_random else raw
    if forced_random and random_weights is False:
        raise EnergyUsageError(f"model {raw!r}: the 'random:' prefix asks for random weights, "
                               "but pretrained weights were requested too; drop one of the two")
    if not reference:
        raise EnergyUsageError(f"model {raw!r} is empty: give one of {', '.join(PACKAGED_MODELS)}, "
                               "a local model folder, or a Hugging Face hub id")
    if reference in PACKAGED_MODELS:
        if random_weights is False:
            raise EnergyUsageError(
                f"model {reference!r} is a packaged config without weights: it always runs with random "
                "weights; for pretrained weights give a local folder or a hub id"
            )
        return ModelSpec(reference, "packaged", str(CONFIGS_DIR / reference), True)
    folder = Path(reference).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise EnergyUsageError(f"model folder {folder} has no config.json: point at a Hugging Face model "
                                   "folder (one that from_pretrained can read)")
        absolute = str(folder.resolve())
        return ModelSpec(reference, "path", absolute, bool(forced_random or random_weights))
    if reference.startswith(("/", ".", "~")) or os.sep + os.sep in reference:
        raise EnergyUsageError(f"model folder {reference} does not exist")
    if "/" in reference:
        return ModelSpec(reference, "hub", reference, bool(forced_random or random_weights))
    close = difflib.get_close_matches(reference, PACKAGED_MODELS, n=1)
    raise EnergyUsageError(
        f"unknown model {reference!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        + f": use a packaged name ({', '.join(PACKAGED_MODELS)}), a local model folder, or a Hugging Face hub "
        "id such as meta-llama/Llama-3.2-1B"
    )


def config_for(name: str, *, explicit: bool) -> dict | None:
    """The HF config of a model: a config.json path, or what `resolve_model` finds for the name.

    When the name came from results rather than from the user, failure means "no config", not an error.
    """
    path = Path(name)
    if path.suffix == ".json" or path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise EnergyUsageError(f"--model {name}: cannot read it as a config.json ({error})") from None
    try:
        return dict(resolve_model(name).config_dict())
    except EnergyError:
        if explicit:
            raise
        return None


def packaged_config_dir(name: str) -> Path:
    return CONFIGS_DIR / name


def model_parameter_count(config: dict) -> int:
    """Parameters of a dense decoder (Llama, Qwen2, Mistral shapes) from its config, embeddings included.

    Matches the model's own count: Llama-3.2-1B 1,235,814,400; Llama-3.1-8B 8,030,261,248;
    Qwen2.5-0.5B 494,032,768.
    """
    config = config.get("text_config", config)
    hidden = int(config["hidden_size"])
    layers = int(config["num_hidden_layers"])
    heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    intermediate = int(config["intermediate_size"])
    vocab = int(config["vocab_size"])
    # Qwen2 always has q/k/v biases; Llama-style configs say so with attention_bias.
    qkv_bias = config.get("model_type") == "qwen2" or bool(config.get("attention_bias", False))
    output_bias = bool(config.get("attention_bias", False)) and config.get("model_type") != "qwen2"
    attention = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    if qkv_bias:
        attention += heads * head_dim + 2 * kv_heads * head_dim
    if output_bias:
        attention += hidden
    mlp = 3 * hidden * intermediate
    if config.get("mlp_bias", False):
        mlp += 2 * intermediate + hidden
    norms = 2 * hidden
    embeddings = vocab * hidden
    lm_head = 0 if config.get("tie_word_embeddings", False) else vocab * hidden
    return embeddings + layers * (attention + mlp + norms) + hidden + lm_head


@lru_cache(maxsize=32)
def _config_text(source: str, reference: str) -> str:
    folder = Path(reference) if source in ("packaged", "path") else _hub_snapshot(reference)
    path = folder / "config.json"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as error:
        raise BackendError(f"cannot read {path}: {error}") from None


def _hub_snapshot(repo_id: str) -> Path:
    """The cached snapshot folder of a hub id. Never the network: a test run must not download weights."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise BackendError(f"model {repo_id!r} is a hub id, but huggingface_hub is not installed: "
                           "pip install huggingface_hub, or use a packaged name or a local folder") from None
    try:
        return Path(hf_hub_download(repo_id, "config.json", local_files_only=True)).parent
    except Exception as error:
        raise BackendError(hub_unavailable_message(repo_id, error)) from None


def hub_unavailable_message(repo_id: str, error: BaseException | None = None) -> str:
    """One message for every failed hub load: what, where it looked, what to do instead."""
    from huggingface_hub import constants

    detail = f" ({type(error).__name__})" if error is not None else ""
    return (
        f"model {repo_id!r} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}){detail}; "
        f"the plugin never downloads. Download it beforehand (`hf download {repo_id}`), point the model "
        f"option at a local model folder, or use a packaged config with random weights: "
        f"{', '.join(PACKAGED_MODELS)}"
    )
