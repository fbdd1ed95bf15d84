"""The Hugging Face transformers backend: `model.generate` on one device, with the optimizations it offers.

Static KV cache and torch.compile take the path `generate` drives itself: `compile=True` means a static
cache and a `CompileConfig` (generate compiles its own decode step), and `static_cache=True` alone passes
`disable_compile=True`, because on a GPU a static cache otherwise compiles by itself. The backend never
compiles `model.forward` by hand: that also compiles the prefill, and fails with CUDA graphs
(benchmarks/README.md section 3, which `benchmarks/hf_variants.py` measures).
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...core.errors import BackendError, EnergyUsageError
from .base import Backend, BackendOptions, Generation, exact_generation
from .placement import free_device_memory, resolve_device, resolve_dtype

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ...core.models import ModelSpec
    from ...core.workload import Workload

# BackendOptions.extra keys this backend reads (anything else is a usage error, not a silent no-op).
EXTRA_KEYS = ("compile_mode", "compile_fullgraph", "compile_dynamic")
# Graphs dynamo keeps per compiled function before it falls back to eager: one per bin shape (batch, lengths,
# beams) that a process runs.
RECOMPILE_LIMIT = 64
# Options that change what `load` builds; the pool keeps a loaded model while these are the same.
LOAD_OPTIONS = ("dtype", "device", "tensor_parallel_size", "attention", "compile", "static_cache",
                "cuda_graphs", "extra")


@dataclass(frozen=True)
class HFPrepared:
    """A workload as tensors on the device, with the exact `generate` arguments that will run it."""

    workload: Workload
    input_ids: Any  # torch.LongTensor (batch, prompt length), left-padded
    attention_mask: Any
    generate_kwargs: dict
    input_tokens: int  # real (unpadded) prompt tokens, summed over the batch


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: ModelSpec, options: BackendOptions, max_num_seqs: int = 1) -> None:
        super().__init__(model, options, max_num_seqs)  # generate takes any batch size: not a load key here
        self._model = None
        self._tokenizer = None
        self._device = "cpu"
        self._dtype = "float32"
        self._pad_token_id = 0
        self._eos_token_ids: tuple[int, ...] = ()
        self._cache_kwargs: dict = {}
        self._compiled_shapes: set[tuple] = set()

    @staticmethod
    def load_key(options: BackendOptions, batch_size: int) -> tuple:
        return tuple((name, getattr(options, name)) for name in LOAD_OPTIONS)

    # -- load ------------------------------------------------------------------------------------------------
    def load(self) -> None:
        extra = dict(self.options.extra)
        unknown = sorted(set(extra) - set(EXTRA_KEYS))
        if unknown:
            raise EnergyUsageError(f"hf backend: unknown option(s) {', '.join(unknown)}; "
                                   f"it reads {', '.join(EXTRA_KEYS)}")
        if not self.options.compile and any(key.startswith("compile_") for key in extra):
            raise EnergyUsageError("hf backend: compile_* options need compile=True")
        if self.options.tensor_parallel_size != 1:
            raise EnergyUsageError("hf backend runs on one device (tensor_parallel_size=1); use the vllm "
                                   "backend for tensor parallelism")
        import torch
        import transformers

        self._device = resolve_device(self.options.device)
        if self._device == "cuda" and not torch.cuda.is_available():
            raise BackendError("hf backend: device 'cuda' was asked for, but torch sees no CUDA GPU "
                               f"(torch {torch.__version__}); use device 'cpu' or a CUDA build of torch")
        self._dtype = resolve_dtype(self.options.dtype, self._device)
        folder = self.model.local_folder()
        torch_dtype = getattr(torch, self._dtype)
        try:
            if self.model.random_weights:
                config = transformers.AutoConfig.from_pretrained(folder)
                # Built directly on the device: no fp32 copy in host memory, no host-to-device transfer.
                with torch.device(self._device):
                    model = transformers.AutoModelForCausalLM.from_config(
                        config, dtype=torch_dtype, attn_implementation=self.options.attention)
            else:
                # Straight to the device needs accelerate (device_map); without it, via host memory.
                placement = {"device_map": self._device} if importlib.util.find_spec("accelerate") else {}
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    folder, dtype=torch_dtype, attn_implementation=self.options.attention, **placement)
                model = model.to(self._device)
        except (ValueError, ImportError) as error:
            raise BackendError(
                f"hf backend could not build {self.model.name} ({self.model.weights} weights) with "
                f"attention={self.options.attention!r}, dtype={self._dtype}: {error}"
            ) from error
        except OSError as error:
            raise BackendError(f"hf backend could not load {self.model.name} from {folder}: {error}") from error
        model.eval()
        self._model = model
        if self.model.has_tokenizer:
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(folder, padding_side="left")
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = model.config.eos_token_id
        self._eos_token_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (eos,))
        pad = getattr(self._tokenizer, "pad_token_id", None)
        self._pad_token_id = pad if pad is not None else (self._eos_token_ids[0] if self._eos_token_ids else 0)
        if self._tokenizer is not None and self._tokenizer.pad_token_id is None:
            self._tokenizer.pad_token_id = self._pad_token_id
        self._cache_kwargs = self._build_cache_kwargs(extra)

    def _build_cache_kwargs(self, extra: dict) -> dict:
        """The `generate` arguments for the KV cache and compilation (see the module docstring)."""
        if not (self.options.static_cache or self.options.compile):
            return {}
        if not self.options.compile:
            return {"cache_implementation": "static", "disable_compile": True}
        from transformers import CompileConfig

        # "reduce-overhead" = inductor + CUDA graphs; on the CPU there are no graphs to capture.
        cuda_graphs = self.options.cuda_graphs and self._device == "cuda"
        # Static shapes: each bin compiles its own graph, so what it measures does not depend on which bins
        # ran before it in the process (with automatic dynamic shapes, a bin after a recompile would run
        # the dynamic graph). Dynamo's default of 8 graphs per function would send the 9th bin back to eager.
        compile_config = CompileConfig(
            mode=extra.get("compile_mode", "reduce-overhead" if cuda_graphs else "default"),
            fullgraph=bool(extra.get("compile_fullgraph", False)),
            dynamic=extra.get("compile_dynamic", False),
        )
        import torch._dynamo

        config = torch._dynamo.config
        setting = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.7
        setattr(config, setting, max(getattr(config, setting), RECOMPILE_LIMIT))
        if self._device == "cpu":
            # generate compiles only on accelerators unless told otherwise; compile=True must mean compiled.
            compile_config._compile_all_devices = True
        return {"cache_implementation": "static", "compile_config": compile_config}

    # -- prepare / generate ----------------------------------------------------------------------------------
    def prepare(self, workload: Workload, prompts: Sequence[str] | None = None) -> HFPrepared:
        """Synthetic token-id prompts of exactly `input_tokens`, or the given text prompts (left-padded)."""
        import torch

        self._require_loaded()
        if prompts is None:
            ids = torch.tensor(workload.prompt_token_ids(self.model.vocab_size), dtype=torch.long,
                               device=self._device)
            mask = torch.ones_like(ids)
        else:
            if self._tokenizer is None:
                raise EnergyUsageError(f"text prompts need a tokenizer, and {self.model.name} has none: use "
                                       "synthetic prompts (no prompts argument) or a model folder with a tokenizer")
            if len(prompts) != workload.batch_size:
                raise EnergyUsageError(f"{len(prompts)} text prompts for a workload of batch size "
                                       f"{workload.batch_size}: give one prompt per request")
            encoded = self._tokenizer(list(prompts), return_tensors="pt", padding=True)
            ids, mask = encoded["input_ids"].to(self._device), encoded["attention_mask"].to(self._device)
        return HFPrepared(workload=workload, input_ids=ids, attention_mask=mask,
                          generate_kwargs=self._generate_kwargs(workload), input_tokens=int(mask.sum()))

    def _generate_kwargs(self, workload: Workload) -> dict:
        decoding = workload.decoding
        kwargs: dict = {
            # Both bounds equal: EOS is masked until the last step, so every request yields exactly n tokens.
            "min_new_tokens": workload.output_tokens,
            "max_new_tokens": workload.output_tokens,
            "pad_token_id": self._pad_token_id,
            "num_return_sequences": 1,
            **self._cache_kwargs,
        }
        if decoding.kind == "greedy":
            kwargs.update(do_sample=False, num_beams=1)
        elif decoding.kind == "sampling":
            # top_k=0 turns off transformers' default top-k of 50, so sampling means the same as in vLLM.
            kwargs.update(do_sample=True, num_beams=1, temperature=decoding.temperature, top_p=decoding.top_p,
                          top_k=0)
        else:
            kwargs.update(do_sample=False, num_beams=decoding.num_beams)
        return kwargs

    def generate(self, prepared: HFPrepared) -> Generation:
        import torch

        model = self._require_loaded()
        workload = prepared.workload
        if workload.decoding.kind == "sampling":
            torch.manual_seed(workload.seed)  # the same tokens on every repeat: same work, comparable energy
        if "cache_implementation" in prepared.generate_kwargs:
            # generate sizes a static cache to the longest call so far (to spare recompiles), so a small bin
            # after a big one would attend over the big one's cache; each bin gets its own size instead.
            model._previous_max_cache_length = -1
        try:
            output = model.generate(input_ids=prepared.input_ids, attention_mask=prepared.attention_mask,
                                    **prepared.generate_kwargs)
            if self._device == "cuda":
                torch.cuda.synchronize()
        except BaseException:  # a timeout's Failed or Ctrl-C during a capture leaves the same half-built tree
            self._forget_compiled()
            raise
        self._after_compile(prepared)
        tokens_per_request = self._count_new_tokens(output, prepared.input_ids.shape[1])
        return exact_generation("hf generate", workload, tokens_per_request, prepared.input_tokens)

    def _after_compile(self, prepared: HFPrepared) -> None:
        """After the call that compiled a shape, stop inductor's compile worker processes: they are not
        needed until the next shape, and none should share the host with the measured windows."""
        if "compile_config" not in prepared.generate_kwargs:
            return
        shape = (tuple(prepared.input_ids.shape), prepared.workload.output_tokens, prepared.workload.decoding)
        if shape in self._compiled_shapes:
            return
        self._compiled_shapes.add(shape)
        from torch._inductor import async_compile

        shutdown = getattr(async_compile, "shutdown_compile_workers", None)  # absent from older torch
        if shutdown is not None:
            shutdown()

    def _forget_compiled(self) -> None:
        """After a compiled call failed, start the compiled state afresh. A failure while inductor captured a
        CUDA graph (out of memory, say) leaves its graph tree half built, and every later compiled bin of the
        process then failed on an assertion in it (`dealloc_current_path_weakrefs`); each bin compiles anew."""
        if "compile_config" not in self._cache_kwargs:
            return
        import torch

        self._compiled_shapes.clear()
        with contextlib.suppress(Exception):  # the error that brought us here is the one to report
            torch._dynamo.reset()

    def _count_new_tokens(self, output, prompt_length: int) -> tuple[int, ...]:
        """New tokens per returned sequence, up to and including a first EOS (after it is only padding)."""
        new_tokens = output[:, prompt_length:].tolist()
        counts = []
        for row in new_tokens:
            ends = [i for i, token in enumerate(row) if token in self._eos_token_ids]
            counts.append(ends[0] + 1 if ends else len(row))
        return tuple(counts)

    # -- lifecycle and description ---------------------------------------------------------------------------
    def close(self) -> None:
        if self._model is None:
            return
        compiled = "compile_config" in self._cache_kwargs
        self._model = None
        self._tokenizer = None
        if compiled:
            import torch

            torch._dynamo.reset()  # compiled graphs (and CUDA-graph pools) hold device memory and the model
        free_device_memory()

    def describe(self) -> dict:
        description = super().describe()
        generate_options: dict = {"cache_implementation": self._cache_kwargs.get("cache_implementation", "dynamic")}
        compile_config = self._cache_kwargs.get("compile_config")
        generate_options["compile"] = compile_config.to_dict() if compile_config is not None else None
        if self._device != "cuda":  # CUDA graphs are a GPU's: a CPU record must not claim them
            description["options"] = {**description["options"], "cuda_graphs": False}
        description.update(device=self._device, dtype=self._dtype, generate=generate_options,
                           versions=_versions())
        return description

    def _require_loaded(self):
        if self._model is None:
            raise BackendError("hf backend used before load() or after close(); get it from the BackendPool")
        return self._model


def _versions() -> dict:
    import torch
    import transformers

    return {"torch": str(torch.__version__), "transformers": str(transformers.__version__)}  # TorchVersion is a str subclass
