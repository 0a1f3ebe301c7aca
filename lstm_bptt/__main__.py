"""``python -m lstm_bptt`` runs the command-line interface."""

import sys

from .experiments.cli import main

sys.exit(main())
