from __future__ import annotations

import pytest

from medvlab.errors import ConfigError, ImageLoadError, MedvlabError, look_up_option


def test_message_joins_problem_and_fix() -> None:
    err = ImageLoadError("x.dcm is empty.", "Upload it again.")
    assert str(err) == "x.dcm is empty. Fix: Upload it again."
    assert isinstance(err, MedvlabError) and err.fix == "Upload it again."


def test_look_up_option() -> None:
    assert look_up_option("LUNG", ["lung", "bone"], "window") == "lung"
    with pytest.raises(ConfigError, match="did you mean 'bone'.*Choose one of: lung, bone"):
        look_up_option("bon", ["lung", "bone"], "window")
