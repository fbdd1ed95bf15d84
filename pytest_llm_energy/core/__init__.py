"""The shared core: values, the decision rule, the baseline store, reports as values, and what reads them.

Both the pytest plugin (`plugin/`) and the `llm-energy` command (`cli/`) build on it; it imports neither.
"""

__version__ = "0.1.0"  # the package's, as pyproject.toml states it
