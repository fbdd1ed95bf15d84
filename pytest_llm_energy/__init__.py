"""pytest-llm-energy: joules per output token of LLM inference as a tested property."""

from .core import __version__
from .core.measurement import Measurement
from .core.workload import Decoding, Workload

__all__ = ["Decoding", "Measurement", "Workload", "__version__"]
