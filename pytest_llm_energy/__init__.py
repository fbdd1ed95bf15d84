"""pytest-llm-energy: joules per output token of LLM inference as a tested property."""

from .measurement import Measurement
from .workload import Decoding, Workload

__version__ = "0.1.0"
__all__ = ["Decoding", "Measurement", "Workload", "__version__"]
