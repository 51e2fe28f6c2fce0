"""The knowledge base on report snippets written for these tests (Chinese and English)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from medvlab.errors import KnowledgeBaseError
from medvlab.kb import KnowledgeBase, read_snippets
from medvlab.kb.ingest import read_file
from medvlab.kb.retrieve import grounding_text, references_text, tokenize
from medvlab.kb.store import Snippet
from medvlab.kb.terms import TermTable

DATA = Path(__file__).parents[1] / "data" / "reports"


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    base = KnowledgeBase.at(tmp_path / "kb.sqlite")
    base.add(read_snippets([DATA / "chest_en.md", DATA / "priors.json", DATA / "lungs.csv"]))
    return base


def test_reading_each_format() -> None:
    md = read_file(DATA / "chest_en.md")
    assert len(md) == 1 and md[0].title == "Cardiomegaly, chest radiograph" and md[0].language == "en"
    js = read_file(DATA / "priors.json")
    assert [s.title for s in js][2:] == ["肝囊肿", "急性脑出血"] and js[2].language == "zh"
    csv = read_file(DATA / "lungs.csv")
    assert csv[0].title == "右肺上叶结节" and csv[1].source == "lungs.csv"


def test_bad_files_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match=r"Record 2 of 'bad.json' has no text"):
        read_file(DATA / "bad.json")
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(KnowledgeBaseError, match="not a report file"):
        read_file(tmp_path / "x.docx")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(KnowledgeBaseError, match="not valid JSON"):
        read_file(tmp_path / "broken.json")


def test_tokenize_mixes_words_and_cjk_bigrams() -> None:
    # no CJK unigrams: 胸腔积液 must not match 腔隙 (lacunar) through 腔; a lone character stays a token
    assert tokenize("CT: 肝囊肿 2.1 cm 肝") == ["ct", "2.1", "cm", "肝囊", "囊肿", "肝"]


def test_chinese_query_finds_chinese_report(kb: KnowledgeBase) -> None:
    hits = kb.search("肝脏低密度灶是什么", k=3)
    assert hits[0].snippet.title == "肝囊肿" and hits[0].via[0] == "bm25"
    assert kb.search("脑出血 中线移位")[0].snippet.title == "急性脑出血"
    assert kb.search("肺结节复查")[0].snippet.title == "右肺上叶结节"


def test_english_query_uses_embeddings_when_words_do_not_match(kb: KnowledgeBase, tmp_path: Path) -> None:
    hits = kb.search("big heart", k=2)  # the term table adds "enlarged heart" to the cardiomegaly report
    assert hits[0].snippet.title.startswith("Cardiomegaly") and set(hits[0].via) == {"bm25", "embedding"}
    bare = KnowledgeBase(f"sqlite:///{tmp_path / 'bare.sqlite'}", terms=TermTable(()))
    bare.add(kb.store.all())
    hits = bare.search("big heart", k=2)
    assert hits[0].snippet.title.startswith("Cardiomegaly")
    assert hits[0].via == ("embedding",)  # no shared word and no term table: only the embedding found it
    fused = kb.search("pleural effusion costophrenic angle", k=1)[0]
    assert fused.snippet.title == "Left pleural effusion" and set(fused.via) == {"bm25", "embedding"}


def test_citations_and_grounding_text(kb: KnowledgeBase) -> None:
    hits = kb.search("rib fracture", k=2)
    assert hits[0].citation() == "[1] Rib fracture (priors.json)"
    block = grounding_text(hits, "en")
    assert "[1] Rib fracture:" in block and "cite" in block
    assert references_text(hits, "zh").startswith("\n\n参考资料:\n[1] Rib fracture")


def test_store_persists_and_takes_concurrent_writes(tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite"
    first = KnowledgeBase.at(path)

    def add(i: int) -> None:
        first.add([Snippet(f"t{i}-{j}", f"text {i} {j}", "thread") for j in range(10)])

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reopened = KnowledgeBase.at(path)
    assert reopened.store.count() == 40
    assert reopened.search("text 3 7", k=1)[0].snippet.title == "t3-7"
