"""The FLOPs ideal: the energy a workload would take if the GPU ran its FLOPs at peak rate and board power.

The source paper sets measured energy beside this ideal and finds the ideal undercounts by 1.3x (tuned vLLM)
to 6x (plain HF); the ratio measured / ideal says how far a stack is from the hardware's limit.
Works on a Hugging Face config dict, so it needs no model, weights or torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..core.errors import EnergyUsageError
from ..core.gpus import CPU_KEY, kind_for_key
from ..core.workload import Workload

# Architectures whose MLP has two matrices (up, down); the Llama family's gated MLP has three (gate, up,
# down).
_UNGATED_MLP_TYPES = frozenset({"gpt_neox", "opt", "phi", "starcoder2", "gpt2", "gptj", "bloom", "falcon"})


@dataclass(frozen=True)
class ModelShape:
    """What the FLOPs of a decoder-only transformer depend on, read from its config."""

    layers: int  # num_hidden_layers
    hidden_size: int
    attention_heads: int  # num_attention_heads
    kv_heads: int  # num_key_value_heads (grouped-query attention); = attention_heads without GQA
    head_dim: int  # head_dim, else hidden_size / attention_heads
    intermediate_size: int
    vocab_size: int
    gated_mlp: bool = True

    @classmethod
    def from_config(cls, config: Mapping) -> ModelShape:
        if not isinstance(config, Mapping):
            raise EnergyUsageError("the FLOPs ideal needs a model config dict (config.json)")
        if config.get("num_local_experts") or config.get("num_experts"):
            raise EnergyUsageError(
                "the FLOPs ideal does not cover mixture-of-experts configs yet; leave out --model"
            )
        missing = [
            key
            for key in (
                "num_hidden_layers",
                "hidden_size",
                "num_attention_heads",
                "intermediate_size",
                "vocab_size",
            )
            if not _count(config.get(key))
        ]
        if missing:
            raise EnergyUsageError(
                f"model config lacks {', '.join(missing)} (positive integers); give a Hugging Face "
                "decoder config with the Llama key names"
            )
        heads = int(config["num_attention_heads"])
        kv_heads = config.get("num_key_value_heads") or heads
        head_dim = config.get("head_dim") or int(config["hidden_size"]) // heads
        if not _count(kv_heads) or not _count(head_dim):
            raise EnergyUsageError(
                f"model config: num_key_value_heads={kv_heads!r}, head_dim={head_dim!r} "
                "must be positive integers"
            )
        return cls(
            layers=int(config["num_hidden_layers"]),
            hidden_size=int(config["hidden_size"]),
            attention_heads=heads,
            kv_heads=int(kv_heads),
            head_dim=int(head_dim),
            intermediate_size=int(config["intermediate_size"]),
            vocab_size=int(config["vocab_size"]),
            gated_mlp=config.get("model_type") not in _UNGATED_MLP_TYPES,
        )

    @property
    def layer_parameters(self) -> int:
        """Matrix parameters of one layer: q and o (h x heads*d), k and v (h x kv_heads*d), the MLP."""
        h, d = self.hidden_size, self.head_dim
        attention = h * d * (2 * self.attention_heads + 2 * self.kv_heads)
        mlp = (3 if self.gated_mlp else 2) * h * self.intermediate_size
        return attention + mlp

    @property
    def block_parameters(self) -> int:
        return self.layers * self.layer_parameters

    @property
    def lm_head_parameters(self) -> int:
        return self.hidden_size * self.vocab_size

    @property
    def attention_width(self) -> int:
        return self.attention_heads * self.head_dim


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def prefill_flops(shape: ModelShape, input_tokens: int) -> int:
    """FLOPs of the prefill of one request of P = input_tokens, which also yields the first output token.

        prefill = 2 * N_blocks * P  +  2 * h * V  +  4 * L * (heads * d) * P * (P + 1) / 2

    N_blocks = L * (h*d*(2*heads + 2*kv_heads) + 3*h*I) are the matrix parameters of the L layers (2 FLOPs
    each per token: one multiply, one add); h*V is the LM head, run on the last position only; the last term
    is attention itself (Q.K^T and the weighted sum of V, 2 FLOPs each per head dim per key), where position
    t of the causal prefill attends to t keys. Norms, rotary embeddings and softmax are left out (< 1%).
    """
    p = input_tokens
    return (
        2 * shape.block_parameters * p
        + 2 * shape.lm_head_parameters
        + 4 * shape.layers * shape.attention_width * p * (p + 1) // 2
    )


def decode_flops(shape: ModelShape, input_tokens: int, output_tokens: int) -> int:
    """FLOPs of the G - 1 decode steps after the prefill (G = output_tokens, P = input_tokens).

        decode = (G - 1) * (2 * N_blocks + 2 * h * V)
                 + 4 * L * (heads * d) * ((G - 1) * P + G * (G - 1) / 2)

    Step j = 1 .. G-1 runs one new token through every layer and the LM head, and its attention reads the
    P + j keys in the KV cache (summed: (G-1)*P + G*(G-1)/2). Beam search is counted as one sequence per
    request: extra beams are overhead the ideal does not pay.
    """
    p, g = input_tokens, output_tokens
    steps = max(g - 1, 0)
    return steps * (
        2 * shape.block_parameters + 2 * shape.lm_head_parameters
    ) + 4 * shape.layers * shape.attention_width * (steps * p + g * steps // 2)


def request_flops(shape: ModelShape, input_tokens: int, output_tokens: int) -> int:
    return prefill_flops(shape, input_tokens) + decode_flops(shape, input_tokens, output_tokens)


def workload_flops(shape: ModelShape, workload: Workload) -> int:
    return workload.batch_size * request_flops(shape, workload.input_tokens, workload.output_tokens)


@dataclass(frozen=True)
class FlopsIdeal:
    """FLOPs x TDP / peak FLOP/s on one GPU kind; `joules` is None without an ideal (`reason` says why)."""

    flops: float
    gpu: str
    joules: float | None
    tdp_watts: float | None = None
    bf16_peak_tflops: float | None = None
    reason: str | None = None

    def ratio(self, measured_joules: float) -> float | None:
        """measured / ideal: how many times the ideal the stack really used."""
        if self.joules is None or self.joules <= 0:
            return None
        return measured_joules / self.joules

    def to_dict(self) -> dict:
        return {
            "flops": self.flops,
            "gpu": self.gpu,
            "joules": self.joules,
            "tdp_watts": self.tdp_watts,
            "bf16_peak_tflops": self.bf16_peak_tflops,
            "reason": self.reason,
        }


def ideal_energy(flops: float, gpu_key: str) -> FlopsIdeal:
    """The paper's ideal: time at the bf16 peak rate (FLOPs / peak) at the board's full power (TDP)."""
    if gpu_key == CPU_KEY:
        return FlopsIdeal(
            flops, gpu_key, None, reason="no FLOPs ideal on the CPU (no TDP/bf16 peak to run at)"
        )
    kind = kind_for_key(gpu_key)
    if kind is None:
        return FlopsIdeal(
            flops,
            gpu_key,
            None,
            reason=f"no FLOPs ideal for GPU {gpu_key!r}: it is not in the GPU table (gpus.py)",
        )
    joules = flops * kind.tdp_watts / (kind.bf16_peak_tflops * 1e12)
    return FlopsIdeal(flops, gpu_key, joules, kind.tdp_watts, kind.bf16_peak_tflops)


def workload_ideal(config: Mapping, workload: Workload, gpu_key: str) -> FlopsIdeal:
    """The ideal energy of one binned workload (a full batch) on a GPU kind."""
    return ideal_energy(workload_flops(ModelShape.from_config(config), workload), gpu_key)
