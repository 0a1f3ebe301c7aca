"""Data files shipped with lstm-bptt, installed as the resource package ``lstm_bptt._datasets``.

This ``__init__.py`` only makes the folder a regular package, which setuptools' editable installs
need in order to map it; it holds no code. Load the data with ``lstm_bptt.experiments.datasets``.
"""
