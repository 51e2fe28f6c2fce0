"""``/v1/segment``: structures and volumes (mL) as JSON, the mask as NIfTI, or a DICOM SEG."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from medvlab.errors import InputRefusedError
from medvlab.server.deps import Admitted, LabDep
from medvlab.server.schemas import SegmentRequest

router = APIRouter(prefix="/v1", tags=["lab"])


@router.post("/segment", response_model=None)
def segment(body: SegmentRequest, lab: LabDep, guard: Admitted) -> Any:
    """Segment a 3-D volume: structures and volumes (mL) as JSON, the mask as NIfTI, or a DICOM SEG."""
    from medvlab.seg.model import BUILTIN

    allowed = {*BUILTIN, lab.settings.seg_model}
    if body.model is not None and body.model not in allowed:
        raise InputRefusedError(
            f"Segmentation model '{body.model}' is not served here.",
            f"Use one of: {', '.join(sorted(allowed))} (the server's MEDVLAB_SEG_MODEL sets another).",
        )
    if body.format in ("dicom-seg", "dicom-sr"):
        convert = lab.segment_to_dicom_seg if body.format == "dicom-seg" else lab.segment_to_dicom_sr
        _, data = convert(body.image, body.model)
        return Response(
            data,
            media_type="application/dicom",
            headers={"Content-Disposition": f'attachment; filename="medvlab-{body.format[6:]}.dcm"'},
        )
    image = lab.load_image_reference(body.image)
    result = lab.segment(image, body.model)
    if body.format == "nifti":
        return Response(
            lab.mask_nifti(result, image),
            media_type="application/gzip",
            headers={"Content-Disposition": 'attachment; filename="medvlab-mask.nii.gz"'},
        )
    return {"model": body.model or lab.settings.seg_model, **result.summary()}
