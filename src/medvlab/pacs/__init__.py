"""The lab in a hospital's network: DICOMweb endpoints from settings (:mod:`~medvlab.pacs.config`), a client
for QIDO-RS search, WADO-RS retrieval and STOW-RS storage (:mod:`~medvlab.pacs.client`, over the maintained
``dicomweb-client``), and the text of prior reports stored in a PACS (:mod:`~medvlab.pacs.documents`).

A library: it never imports ``services``, ``server``, ``ui`` or ``cli``.
"""

from medvlab.pacs.client import PacsClient
from medvlab.pacs.config import PacsEndpoint, endpoints, pick
from medvlab.pacs.records import Filters, SeriesRow, Stored, StudyRow

__all__ = ["Filters", "PacsClient", "PacsEndpoint", "SeriesRow", "Stored", "StudyRow", "endpoints", "pick"]
