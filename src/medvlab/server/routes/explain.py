"""``/v1/explain``: attention maps of an answer over the image(s) it was given."""

from __future__ import annotations

import base64
import io
from typing import Any

from fastapi import APIRouter

from medvlab.server.deps import Admitted, LabDep
from medvlab.server.schemas import ExplainRequest
from medvlab.vlm.prompting import Turn

router = APIRouter(prefix="/v1", tags=["lab"])


def png_uri(picture: Any) -> str:
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@router.post("/explain")
def explain(body: ExplainRequest, lab: LabDep, guard: Admitted) -> dict[str, Any]:
    """Attention maps of an answer over the image(s) it was given, as PNG data URIs."""
    turns = [Turn("user", body.question, [lab.load_image_reference(body.image)])]
    prompt = lab.prompt_options(body.window, body.max_slices, body.language)
    heatmaps = lab.explain(turns, body.answer, prompt, body.span)
    return {"heatmaps": [{"label": label, "png": png_uri(pic)} for pic, label in heatmaps]}
