"""The offline vLLM backend: an in-process `vllm.LLM` engine fed token-id prompts, one batch per call."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...core.errors import BackendError, EnergyUsageError
from .base import Backend, BackendOptions, Generation, exact_generation
from .placement import free_device_memory, resolve_device
from .vllm_common import LOAD_OPTIONS, check_engine_options, engine_arguments, vllm_environment, vllm_version

if TYPE_CHECKING:
    from ...core.models import ModelSpec
    from ...core.workload import Workload


@dataclass(frozen=True)
class VLLMPrepared:
    workload: Workload
    prompts: list  # TokensPrompt per request
    params: Any  # SamplingParams, or BeamSearchParams for beam decoding


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(self, model: ModelSpec, options: BackendOptions, max_num_seqs: int = 1) -> None:
        super().__init__(model, options, max_num_seqs)
        self._llm = None
        self._arguments: dict = {}

    @staticmethod
    def load_key(options: BackendOptions, batch_size: int) -> tuple:
        return tuple((name, getattr(options, name)) for name in LOAD_OPTIONS) + (("max_num_seqs", batch_size),)

    def load(self) -> None:
        device = resolve_device(self.options.device)
        os.environ.update(vllm_environment(device))  # read by vLLM at import, so before the first import
        check_engine_options(self.name, dict(self.options.extra))
        self._arguments = engine_arguments(self.model, self.options, self.max_num_seqs)
        try:
            from vllm import LLM
        except ImportError as error:
            raise BackendError(f"vllm backend: vllm cannot be imported ({error})") from error
        try:
            self._llm = LLM(**self._arguments)
        except Exception as error:
            raise BackendError(
                f"vllm could not start an engine for {self.model.name} ({self.model.weights} weights, "
                f"{self._arguments['model']}): {type(error).__name__}: {error}"
            ) from error

    def prepare(self, workload: Workload) -> VLLMPrepared:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self._require_loaded()
        if workload.batch_size > self.max_num_seqs:
            raise BackendError(
                f"vllm engine was started with max_num_seqs={self.max_num_seqs}, workload {workload.label} "
                f"has {workload.batch_size} requests; get the backend from the BackendPool with this batch size"
            )
        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in workload.prompt_token_ids(self.model.vocab_size)]
        decoding = workload.decoding
        n = workload.output_tokens
        if decoding.kind == "beam":
            return VLLMPrepared(workload, prompts, self._beam_params(workload))
        if decoding.kind == "greedy":
            params = SamplingParams(min_tokens=n, max_tokens=n, ignore_eos=True, temperature=0.0, detokenize=False)
        else:
            params = SamplingParams(min_tokens=n, max_tokens=n, ignore_eos=True, temperature=decoding.temperature,
                                    top_p=decoding.top_p, seed=workload.seed, detokenize=False)
        return VLLMPrepared(workload, prompts, params)

    def _beam_params(self, workload: Workload):
        # vLLM's beam search runs in Python over one-token requests and decodes the winners to text, so it
        # needs the model's tokenizer, which a packaged config does not have.
        if self._arguments.get("skip_tokenizer_init"):
            raise EnergyUsageError(
                f"beam decoding is not offered by the vllm backend for {self.model.name}: vLLM's beam search "
                "needs the model's tokenizer and this model has none; use the hf backend for beam search, or "
                "a local model folder with a tokenizer"
            )
        from vllm.sampling_params import BeamSearchParams

        return BeamSearchParams(beam_width=workload.decoding.num_beams, max_tokens=workload.output_tokens,
                                ignore_eos=True)

    def generate(self, prepared: VLLMPrepared) -> Generation:
        llm = self._require_loaded()
        workload = prepared.workload
        if workload.decoding.kind == "beam":
            outputs = llm.beam_search(prepared.prompts, prepared.params)
            # The best sequence of each request holds its prompt and then the new tokens.
            tokens_per_request = tuple(
                len(output.sequences[0].tokens) - len(prompt["prompt_token_ids"])
                for output, prompt in zip(outputs, prepared.prompts, strict=False)  # a short answer fails below
            )
        else:
            outputs = llm.generate(prepared.prompts, prepared.params, use_tqdm=False)
            tokens_per_request = tuple(len(output.outputs[0].token_ids) for output in outputs)
        return exact_generation("vllm", workload, tokens_per_request, workload.total_input_tokens)

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        del llm
        try:  # vLLM's own teardown between engines in one process (model-parallel groups, caches)
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()
        except Exception:
            pass
        free_device_memory()

    def describe(self) -> dict:
        description = super().describe()
        description.update(engine={k: v for k, v in self._arguments.items() if k != "model"},
                           versions={"vllm": vllm_version()})
        return description

    def _require_loaded(self):
        if self._llm is None:
            raise BackendError("vllm backend used before load() or after close(); get it from the BackendPool")
        return self._llm
