"""DICOM Structured Reports of what the lab found, filed in the source study beside its images (highdicom).

Two documents:

- :func:`measurement_report`: a Comprehensive 3D SR following TID 1500 (Measurement Report) with one
  TID 1411 measurement group per segmented structure: its volume in mL, the SEG segment it was measured on
  (``ReferencedSegment``, which also lists the source images) and the segment's category and type as the
  finding. Viewers that read TID 1500 (OHIF, 3D Slicer's QIICR plugin, dcmqi) show the volumes by segment.
- :func:`answer_report`: a Comprehensive SR whose text items carry the question, the VLM's answer, the
  model and adapter identity and the research-use disclaimer; the device observer names the model.

Both copy the patient and study attributes of the first source as the caller has them (highdicom takes
them from the evidence), so a PACS files them in the source study; every source is listed as evidence.
The SR content trees are highdicom's; nothing here hand-builds a content item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydicom.dataset import Dataset

from medvlab import __version__
from medvlab.errors import ConfigError
from medvlab.imaging.dicom import STUDY_ATTRIBUTES

SERIES_NUMBER_SR = 950
"""Series number of the SRs medvlab writes (the SEG uses the source's + 900, the PDF 999)."""

LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("en-US", "English (United States)"),
    "zh": ("zh-CN", "Chinese (China)"),
}
"""Report language -> RFC 5646 code and meaning, for TID 1204 Language of Content."""

_PROCEDURES: dict[str, tuple[str, str]] = {
    "CT": ("25045-6", "CT unspecified body region"),
    "MR": ("25056-3", "MRI unspecified body region"),
}
"""LOINC procedure codes by modality; anything else reports the generic SNOMED "Imaging procedure"."""


def _header(ds: Dataset) -> Dataset:
    """A shallow copy of ``ds`` without its pixels."""
    out = Dataset()
    for elem in ds:
        if elem.keyword not in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
            out.add(elem)
    return out


def _check_sources(sources: Sequence[Dataset], what: str) -> list[Dataset]:
    sources = list(sources)
    missing = [
        tag
        for tag in ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID")
        if not sources or any(tag not in ds for ds in sources)
    ]
    if missing:
        raise ConfigError(
            f"A DICOM {what} needs the DICOM images it reports on; "
            f"{'none were given' if not sources else 'they lack ' + ', '.join(missing)}.",
            "Load the DICOM series (not a photo or a NIfTI file) and pass its headers.",
        )
    # highdicom reads the type 2 patient/study attributes off the first source: present, maybe empty
    first = _header(sources[0])
    for tag in STUDY_ATTRIBUTES:
        if tag not in first:
            setattr(first, tag, "")
    return [first, *sources[1:]]


def _language(hd: Any, language: str) -> Any:
    code, meaning = LANGUAGES.get(language, LANGUAGES["en"])
    return hd.sr.LanguageOfContentItemAndDescendants(hd.sr.CodedConcept(code, "RFC5646", meaning))


def _device_context(hd: Any, name: str, model: str | None) -> Any:
    """The observer: this software, running ``model``."""
    from pydicom.sr.codedict import codes

    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=hd.UID(),
                name=name[:64],
                manufacturer_name="medvlab",
                model_name=(model or "medvlab")[:64],
            ),
        )
    )


def _procedure(hd: Any, sources: Sequence[Dataset]) -> Any:
    from pydicom.sr.codedict import codes

    modality = str(sources[0].get("Modality", "")).upper()
    if modality in _PROCEDURES:
        code, meaning = _PROCEDURES[modality]
        return hd.sr.CodedConcept(code, "LN", meaning)
    return codes.SCT.ImagingProcedure


def _document(hd: Any, cls: Any, sources: list[Dataset], content: Any, description: str) -> Dataset:
    sr = cls(
        evidence=sources,
        content=content,
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER_SR,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medvlab",
        is_complete=True,
        is_final=False,  # nobody verified it: research output
        is_verified=False,
        series_description=description,
    )
    sr.SoftwareVersions = __version__
    # text items hold any language (the disclaimer in Chinese): UTF-8; values copied from the source are
    # decoded text already, so they re-encode correctly
    sr.SpecificCharacterSet = "ISO_IR 192"
    return sr


def _referenced_segment(hd: Any, seg: Dataset, number: int) -> Any:
    """The segment with the source images it was drawn on. highdicom finds them per frame; a SEG whose
    segment identification is shared by all frames (one segment), or an empty segment with no frames,
    references the images of its ``ReferencedSeriesSequence`` instead."""
    try:
        return hd.sr.ReferencedSegment.from_segmentation(seg, number)
    except (AttributeError, ValueError):
        images = [
            hd.sr.SourceImageForSegmentation(ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID)
            for series in seg.get("ReferencedSeriesSequence", [])
            for ref in series.get("ReferencedInstanceSequence", [])
        ]
        if not images:
            raise ConfigError(
                "The DICOM SEG references no source images, so its volumes cannot be tied to them.",
                "Write the SEG from the DICOM series it segments (medvlab seg ... --dicom-seg).",
            ) from None
        return hd.sr.ReferencedSegment(seg.SOPClassUID, seg.SOPInstanceUID, number, source_images=images)


def measurement_report(
    sources: Sequence[Dataset],
    seg: Dataset,
    volumes_ml: Mapping[str, float],
    *,
    model: str | None = None,
    language: str = "en",
) -> Dataset:
    """A TID 1500 measurement report (Comprehensive 3D SR) of each structure's volume in mL.

    ``sources`` are the headers of the images that were segmented (the SEG's source series), ``seg`` the
    DICOM SEG written from them, ``volumes_ml`` the volume of each structure by segment label. Each
    structure's group references its segment in ``seg``; a label with no segment is an error.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = _check_sources(sources, "measurement report")
    if str(seg.get("SOPClassUID", "")) != "1.2.840.10008.5.1.4.1.1.66.4":
        raise ConfigError(
            "The measurement report must reference a DICOM SEG; the object given is not one.",
            "Pass the SEG written for these images (medvlab seg ... --dicom-seg).",
        )
    segments = {
        str(item.SegmentLabel): item for item in seg.get("SegmentSequence", []) if "SegmentLabel" in item
    }
    unknown = [name for name in volumes_ml if name not in segments]
    if unknown or not volumes_ml:
        raise ConfigError(
            f"No segment of the SEG is labelled {', '.join(map(repr, unknown)) or '(no volumes given)'}; "
            f"it has {', '.join(map(repr, segments)) or 'none'}.",
            "Measure the structures of the SEG that the report references.",
        )
    algorithm = hd.sr.AlgorithmIdentification(name=(model or "medvlab")[:64], version=__version__)
    groups = []
    for name, volume in volumes_ml.items():
        item = segments[name]
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=name[:64]),
                referenced_segment=_referenced_segment(hd, seg, int(item.SegmentNumber)),
                finding_type=hd.sr.CodedConcept.from_dataset(item.SegmentedPropertyTypeCodeSequence[0]),
                finding_category=hd.sr.CodedConcept.from_dataset(
                    item.SegmentedPropertyCategoryCodeSequence[0]
                ),
                algorithm_id=algorithm,
                measurements=[
                    hd.sr.Measurement(
                        name=codes.SCT.Volume,
                        value=round(float(volume), 3),
                        unit=hd.sr.CodedConcept("ml", "UCUM", "milliliter"),
                        algorithm_id=algorithm,
                    )
                ],
            )
        )
    content = hd.sr.MeasurementReport(
        observation_context=_device_context(hd, "medvlab segmentation", model),
        procedure_reported=_procedure(hd, sources),
        imaging_measurements=groups,
        language_of_content_item_and_descendants=_language(hd, language),
    )
    evidence = [*sources, _header(seg)]  # the SEG is evidence too: its segments are referenced
    return _document(hd, hd.sr.Comprehensive3DSR, evidence, content, "medvlab volumes - research use only")


def _text(hd: Any, relationship: Any, concept: Any, value: str) -> Any:
    return hd.sr.TextContentItem(name=concept, value=value, relationship_type=relationship)


def answer_report(
    sources: Sequence[Dataset],
    question: str,
    answer: str,
    *,
    model: str,
    adapter: str | None,
    disclaimer: str,
    language: str = "en",
) -> Dataset:
    """A text SR (Comprehensive SR) of one question and the model's answer about ``sources``.

    The document carries the question (``Request``), the answer (``Finding``), the model and adapter
    (``Algorithm Name`` / ``Algorithm Parameters``, and the device observer) and the research-use
    ``disclaimer`` (``Comment``: the one every answer of the lab ends with, in ``language``; the caller
    passes it, since imaging sits below the prompting code that words it).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = _check_sources(sources, "text report")
    if not question.strip() or not answer.strip():
        raise ConfigError(
            "A text report needs a question and an answer; one of them is empty.",
            "Ask the question first, then write the report of its answer.",
        )
    rel = hd.sr.RelationshipTypeValues.CONTAINS
    items = [
        *_language(hd, language),
        *_device_context(hd, "medvlab VLM", model),
        _text(hd, rel, codes.DCM.Request, question.strip()),
        _text(hd, rel, codes.DCM.Finding, answer.strip()),
        _text(hd, rel, codes.DCM.AlgorithmName, model),
        _text(hd, rel, codes.DCM.AlgorithmVersion, __version__),
        _text(hd, rel, codes.DCM.AlgorithmParameters, f"adapter: {adapter or 'none'}"),
        _text(hd, rel, codes.DCM.Comment, disclaimer),
    ]
    root = hd.sr.ContainerContentItem(name=hd.sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report"))
    root.ContentSequence = hd.sr.ContentSequence(items)
    return _document(hd, hd.sr.ComprehensiveSR, sources, root, "medvlab answer - research use only")


def sr_texts(sr: Dataset) -> dict[str, str]:
    """The text items of an SR's top level by concept meaning (``{"Request": ..., "Finding": ...}``)."""
    return {
        str(item.ConceptNameCodeSequence[0].CodeMeaning): str(item.TextValue)
        for item in sr.get("ContentSequence", [])
        if item.get("ValueType") == "TEXT"
    }


def sr_volumes(sr: Dataset) -> dict[str, float]:
    """The volumes (mL) of a measurement report written by :func:`measurement_report`, by tracking id."""
    import highdicom as hd

    report: Any = hd.sr.Comprehensive3DSR.from_dataset(sr, copy=True).content  # a MeasurementReport
    out: dict[str, float] = {}
    for group in report.get_volumetric_roi_measurement_groups():
        for m in group.get_measurements():
            out[str(group.tracking_identifier)] = float(m.value)
    return out
