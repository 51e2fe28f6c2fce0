"""Many studies at once: find them (folders, NIfTI files, DICOM series folders), run one task per study in
a bounded local pool or on a Ray cluster (one model per worker), one JSONL row per study, resumable.

The task itself (segment, ask) is a picklable factory handed in by ``services.batch``; this package knows
nothing of the lab, only of studies, workers and result rows.
"""

from medvlab.batch.results import ResultsFile
from medvlab.batch.runner import BatchSummary, Work, WorkFactory, run_local
from medvlab.batch.studies import Study, discover

__all__ = ["BatchSummary", "ResultsFile", "Study", "Work", "WorkFactory", "discover", "run_local"]
