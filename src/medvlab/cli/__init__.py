"""The ``medvlab`` command line: a thin face over :mod:`medvlab.services`."""
