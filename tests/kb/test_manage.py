"""Managing the knowledge base: no duplicates on re-adding, paged listing, remove one, clear — in the
library, through the service, on the CLI and over REST."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from medvlab.errors import NotFoundError
from medvlab.kb import KnowledgeBase, read_snippets
from medvlab.kb.store import Snippet, content_hash

DATA = Path(__file__).parents[1] / "data" / "reports"
FILES = [DATA / "chest_en.md", DATA / "priors.json", DATA / "lungs.csv"]


def test_readding_the_same_text_keeps_one_copy_and_its_id(tmp_path: Path) -> None:
    kb = KnowledgeBase.at(tmp_path / "kb.sqlite", use_embeddings=False)
    first, new = kb.add_checked(read_snippets(FILES))
    assert new == 7 and kb.store.count() == 7
    again, new = kb.add_checked(read_snippets(FILES))
    assert new == 0 and again == first and kb.store.count() == 7
    # re-wrapped whitespace is the same text; a different text is new
    ids = kb.add(
        [
            Snippet("x", "Rib  fracture\nof the  left fifth rib."),
            Snippet("y", "Rib fracture of the left fifth rib."),
        ]
    )
    assert ids[0] == ids[1] and kb.store.count() == 8
    assert kb.get(ids[0]).key == content_hash("Rib fracture of the left fifth rib.")


def test_ids_are_never_reused_and_search_follows_removals(tmp_path: Path) -> None:
    kb = KnowledgeBase.at(tmp_path / "kb.sqlite", use_embeddings=False)
    ids = kb.add(read_snippets(FILES))
    rib = next(i for i in ids if kb.get(i).title == "Rib fracture")
    assert kb.search("rib fracture", 1)[0].snippet.id == rib
    removed = kb.remove(rib)
    assert removed.title == "Rib fracture" and kb.store.count() == 6
    assert all(h.snippet.id != rib for h in kb.search("rib fracture", 5))
    with pytest.raises(NotFoundError, match=f"no snippet {rib}"):
        kb.remove(rib)
    (again,) = kb.add([removed])
    assert again > max(ids)  # a fresh id, never the removed one
    assert kb.clear() == 7 and kb.store.count() == 0 and kb.search("rib fracture") == []


def test_paging_and_filtering(tmp_path: Path) -> None:
    kb = KnowledgeBase.at(tmp_path / "kb.sqlite", use_embeddings=False)
    kb.add([Snippet(f"t{i}", f"report number {i}", "gen") for i in range(25)])
    page, total = kb.page(20, 10)
    assert total == 25 and [s.title for s in page] == [f"t{i}" for i in range(20, 25)]
    page, total = kb.page(0, 5, "number 1")
    assert total == 11 and page[0].title == "t1"


def test_an_old_database_is_upgraded_and_deduplicated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE kb_snippets (id INTEGER PRIMARY KEY, source VARCHAR(1024), title VARCHAR(512), "
        "text TEXT, language VARCHAR(8), added_at DATETIME)"
    )
    for t in ("a", "b", "a"):  # the old store doubled re-added files
        con.execute(
            "INSERT INTO kb_snippets (source, title, text, language) VALUES ('s', ?, ?, 'en')",
            (t, f"text {t}"),
        )
    con.commit()
    con.close()
    kb = KnowledgeBase.at(path, use_embeddings=False)
    assert [s.text for s in kb.store.all()] == ["text a", "text b"]
    assert kb.add([Snippet("a2", "text a")]) == [1]


def test_cli_add_list_remove_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medvlab.cli.main import app

    monkeypatch.setenv("MEDVLAB_CACHE_DIR", str(tmp_path))
    run = CliRunner().invoke
    out = run(app, ["kb", "add", *map(str, FILES)])
    assert out.exit_code == 0 and "added 7 snippet(s); the knowledge base now holds 7" in out.output
    out = run(app, ["kb", "add", str(DATA)])  # the folder again (bad.json aside): nothing new
    assert out.exit_code != 0 and "Record 2 of 'bad.json'" in str(out.exception or out.output)
    out = run(app, ["kb", "add", str(DATA / "priors.json")])
    assert "added 0 snippet(s) (4 already stored); the knowledge base now holds 7" in out.output
    out = run(app, ["kb", "list", "--per-page", "3", "--page", "2"])
    assert (
        out.exit_code == 0
        and "page 2/3, 7 snippet(s)" in out.output
        and "     4  肝囊肿  (priors.json, zh)" in out.output
    )
    out = run(app, ["kb", "remove", "4"])
    assert out.exit_code == 0 and out.output.startswith("removed 4: ")
    out = run(app, ["kb", "remove", "4"])
    assert out.exit_code != 0 and "no snippet 4" in str(out.exception)
    out = run(app, ["kb", "clear"])
    assert out.exit_code != 0 and "--yes" in str(out.exception)
    out = run(app, ["kb", "clear", "--yes"])
    assert "removed 6 snippet(s)" in out.output


def test_rest_routes(tmp_path: Path) -> None:
    from medvlab.config import Settings
    from medvlab.server.app import create_app
    from medvlab.services import Lab

    lab = Lab(Settings(model="tiny", cache_dir=tmp_path))
    client = TestClient(create_app(lab, ui=False, preload=False))
    body = {
        "snippets": [
            {"title": "Left pleural effusion", "text": "Small left pleural effusion."},
            {"title": "气胸", "text": "左侧气胸，肺组织压缩约30%。"},
        ]
    }
    first = client.post("/v1/kb/snippets", json=body).json()
    assert first["added"] == 2 and first["total"] == 2
    again = client.post("/v1/kb/snippets", json=body).json()
    assert again == {"added": 0, "ids": first["ids"], "total": 2}
    listed = client.get("/v1/kb/snippets", params={"per_page": 1, "page": 2}).json()
    assert listed["total"] == 2 and listed["pages"] == 2 and listed["snippets"][0]["title"] == "气胸"
    assert client.get("/v1/kb/snippets", params={"per_page": 0}).status_code == 400
    hit = client.get("/v1/kb/search", params={"q": "pneumothorax", "k": 1}).json()["hits"][0]
    assert hit["title"] == "气胸" and hit["id"] == first["ids"][1]  # English query, Chinese report
    gone = client.delete(f"/v1/kb/snippets/{first['ids'][1]}")
    assert gone.status_code == 200 and gone.json()["total"] == 1
    missing = client.delete(f"/v1/kb/snippets/{first['ids'][1]}")
    assert missing.status_code == 404 and "no snippet" in missing.json()["error"]["message"]
    assert client.delete("/v1/kb/snippets").status_code == 400
    assert client.delete("/v1/kb/snippets", params={"confirm": "true"}).json() == {"removed": 1, "total": 0}
