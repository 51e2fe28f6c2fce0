"""The use cases every face (CLI, REST API, web UI) calls; faces hold no logic beyond parsing and display.

``Lab`` (:mod:`medvlab.services.lab`) is the facade; the input policy — what a request may name, how
large it may be once decoded, how many decode at once — lives in :mod:`medvlab.services.inputs`.
"""

from medvlab.services.lab import Lab

__all__ = ["Lab"]
