"""`python -m pytest_llm_energy.cli`: the `llm-energy` command."""

import sys

from . import main

sys.exit(main())
