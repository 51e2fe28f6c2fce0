"""PACS endpoints from settings (no server needed): parsing, names, credentials, error statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvlab.config import settings_with
from medvlab.errors import (
    ConfigError,
    PacsAuthError,
    PacsError,
    PacsNotFoundError,
    PacsStoreError,
    PacsUnavailableError,
    RequestError,
    http_status,
)
from medvlab.pacs import Filters, PacsClient, endpoints, pick
from medvlab.pacs.documents import document_text, sr_lines
from medvlab.vlm.prompting import DISCLAIMERS


def test_endpoints_come_from_env_json_and_a_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "pacs.json"
    file.write_text(
        json.dumps({"pacs": {"archive": {"url": "https://pacs.example/dicom-web", "token_env": "TOK"}}})
    )
    monkeypatch.setenv("MEDVLAB_PACS", '{"orthanc": {"url": "http://127.0.0.1:8042/dicom-web"}}')
    monkeypatch.setenv("MEDVLAB_PACS_CONFIG", str(file))
    s = settings_with()
    found = endpoints(s.pacs, s.pacs_config)
    assert sorted(found) == ["archive", "orthanc"]
    assert found["archive"].token_env == "TOK" and found["orthanc"].url.endswith(":8042/dicom-web")
    assert pick(found, "ARCHIVE").name == "archive"  # names are matched case-insensitively


def test_unknown_name_suggests_the_configured_ones() -> None:
    found = endpoints({"orthanc": "http://127.0.0.1:8042/dicom-web", "archive": "http://h/dicom-web"})
    with pytest.raises(ConfigError, match="did you mean 'orthanc'.*orthanc, archive"):
        pick(found, "orthnc")
    with pytest.raises(ConfigError, match="none was chosen.*--pacs"):
        pick(found, None)
    with pytest.raises(ConfigError, match="No PACS is configured.*MEDVLAB_PACS"):
        pick({}, "orthanc")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"url": "ftp://host"}, "not an http"),
        ({"token_env": "T"}, "has no url"),
        ({"url": "http://h", "user_env": "U"}, "only one of user_env"),
        ({"url": "http://h", "token": "secret"}, "Unknown key.*did you mean 'token_env'"),
        ({"url": "http://h", "timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_endpoints_say_what_is_wrong(spec: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        endpoints({"x": spec})


def test_a_missing_credentials_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDVLAB_TEST_NO_TOKEN", raising=False)
    endpoint = endpoints({"x": {"url": "http://h/dicom-web", "token_env": "MEDVLAB_TEST_NO_TOKEN"}})["x"]
    with pytest.raises(ConfigError, match=r"\$MEDVLAB_TEST_NO_TOKEN, which is not set"):
        PacsClient(endpoint)
    monkeypatch.setenv("MEDVLAB_TEST_NO_TOKEN", "abc")
    assert PacsClient(endpoint).web._session.headers["Authorization"] == "Bearer abc"


def test_bad_config_file_is_one_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "pacs.json"
    file.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        endpoints({}, file)
    with pytest.raises(ConfigError, match="cannot be read"):
        endpoints({}, tmp_path / "missing.json")


def test_dates_are_checked_before_any_request() -> None:
    assert Filters(date="20240101-").study_query() == {"StudyDate": "20240101-"}
    for bad in ("2024", "20240101-2024", "a-b", "-"):
        with pytest.raises(RequestError, match="YYYYMMDD"):
            Filters(date=bad)


def test_pacs_errors_have_http_statuses() -> None:
    assert http_status(PacsUnavailableError("x")) == 503
    assert http_status(PacsAuthError("x")) == 403
    assert http_status(PacsNotFoundError("x")) == 404
    assert http_status(PacsStoreError("x")) == 502
    assert http_status(PacsError("x")) == 502


def test_sr_text_is_flattened_in_document_order() -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    from medvlab.imaging.structured_reports import answer_report

    source = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    sr = answer_report(
        [source],
        "Is there a nodule?",
        "No nodule is seen.",
        model="tiny",
        adapter=None,
        disclaimer=DISCLAIMERS["en"],
    )
    lines = list(sr_lines(sr))
    assert "Request: Is there a nodule?" in lines and "Finding: No nodule is seen." in lines
    assert lines.index("Request: Is there a nodule?") < lines.index("Finding: No nodule is seen.")
    text = document_text(sr)
    assert text.startswith("Diagnostic imaging report") and "adapter: none" in text
