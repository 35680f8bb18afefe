"""DetScope's engine: dense-detector priors, assignment, losses and post-processing, Qt-free.

Start with :mod:`detengine.api` (``inspect``) or ``python -m detengine --help``.
"""
__version__ = "0.1.0"
