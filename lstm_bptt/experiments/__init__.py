"""Applications of the library: the command-line jobs, synthetic tasks, shipped datasets, presets,
n-gram baselines and the gradient-check suite.

Nothing in the core (``lstm_bptt`` outside this folder) imports this package; the modules here use
only the core's public API. Import the modules directly (``from lstm_bptt.experiments.tasks import
adding_problem``); this ``__init__`` imports nothing so that ``import lstm_bptt`` stays light.
"""
