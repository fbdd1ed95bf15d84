"""Workloads: one binned case (input tokens x output tokens x batch size, with a decoding setting)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from .errors import EnergyUsageError

DECODING_KINDS = ("greedy", "sampling", "beam")


@dataclass(frozen=True)
class Decoding:
    """How tokens are chosen. Every kind still yields exactly the asked number of tokens per request."""

    kind: str = "greedy"
    temperature: float = 1.0
    top_p: float = 1.0
    num_beams: int = 1

    def __post_init__(self) -> None:
        if self.kind not in DECODING_KINDS:
            raise EnergyUsageError(
                f"unknown decoding {self.kind!r}: use one of {', '.join(DECODING_KINDS)}"
            )
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise EnergyUsageError(
                f"decoding {self.kind}: temperature must be > 0 and top_p in (0, 1], "
                f"got temperature={self.temperature}, top_p={self.top_p}"
            )
        if self.kind == "beam" and self.num_beams < 2:
            raise EnergyUsageError("beam decoding needs num_beams >= 2 (e.g. 'beam:4')")

    @property
    def label(self) -> str:
        if self.kind == "sampling":
            return f"sampling-t{self.temperature:g}-p{self.top_p:g}"
        if self.kind == "beam":
            return f"beam{self.num_beams}"
        return "greedy"

    @classmethod
    def parse(cls, text: str | Decoding) -> Decoding:
        """Read 'greedy', 'sampling', 'sampling:t=0.7,p=0.9' or 'beam:4'."""
        if isinstance(text, Decoding):
            return text
        kind, _, params = str(text).strip().partition(":")
        if kind == "beam":
            if params and not params.isdigit():
                raise EnergyUsageError(f"decoding {text!r}: write beam search as 'beam:N', e.g. 'beam:4'")
            return cls(kind="beam", num_beams=int(params or 4))
        if kind == "sampling":
            values = {"t": 0.7, "p": 0.9}
            for part in filter(None, params.split(",")):
                key, _, value = part.partition("=")
                if key not in values or not _is_number(value):
                    raise EnergyUsageError(
                        f"decoding {text!r}: sampling takes t=TEMPERATURE and p=TOP_P, "
                        "e.g. 'sampling:t=0.7,p=0.9'"
                    )
                values[key] = float(value)
            return cls(kind="sampling", temperature=values["t"], top_p=values["p"])
        if kind == "greedy" and not params:
            return cls()
        raise EnergyUsageError(
            f"unknown decoding {text!r}: use 'greedy', 'sampling[:t=0.7,p=0.9]' or 'beam[:4]'"
        )


def _is_number(text: str) -> bool:
    return re.fullmatch(r"[0-9]*\.?[0-9]+(e-?[0-9]+)?", text.strip()) is not None


@dataclass(frozen=True)
class Workload:
    """One test case: `batch_size` requests of exactly `input_tokens` in and `output_tokens` out."""

    input_tokens: int
    output_tokens: int
    batch_size: int = 1
    decoding: Decoding = field(default_factory=Decoding)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise EnergyUsageError(f"workload {name} must be a positive integer, got {value!r}")
        if isinstance(self.decoding, str):
            object.__setattr__(self, "decoding", Decoding.parse(self.decoding))

    @property
    def requests(self) -> int:
        return self.batch_size

    @property
    def total_output_tokens(self) -> int:
        return self.batch_size * self.output_tokens

    @property
    def total_input_tokens(self) -> int:
        return self.batch_size * self.input_tokens

    @property
    def shape(self) -> tuple[int, int, int, str]:
        """What warm-up is keyed on: a new shape compiles and allocates anew."""
        return (self.input_tokens, self.output_tokens, self.batch_size, self.decoding.label)

    @property
    def label(self) -> str:
        return f"in{self.input_tokens}-out{self.output_tokens}-b{self.batch_size}-{self.decoding.label}"

    def prompt_token_ids(self, vocab_size: int) -> list[list[int]]:
        """`batch_size` prompts of exactly `input_tokens` ids, the same for the same seed.

        Ids are drawn above the low range where tokenizers keep special and control tokens, so a
        synthetic prompt never contains an end-of-sequence token.
        """
        import numpy as np

        low = min(1000, vocab_size // 4)
        rng = np.random.default_rng(self.seed)
        ids = rng.integers(low, vocab_size, size=(self.batch_size, self.input_tokens))
        return ids.tolist()

    def to_dict(self) -> dict:
        data = asdict(self)
        data["decoding"] = asdict(self.decoding)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Workload:
        fields = dict(data)
        decoding = fields.pop("decoding", None) or {}
        return cls(decoding=Decoding(**decoding) if isinstance(decoding, dict) else Decoding.parse(decoding),
                   **fields)
