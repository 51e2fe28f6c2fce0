"""Built-in rewards on hand-made answers (zh and en) with exact values; the plugin registry and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvlab.errors import ConfigError
from medvlab.train.rewards import REGISTRY, answer_text, get, load_plugin, parse_spec, resolve_rewards
from medvlab.train.rewards.text import lexicon, negated_findings, yes_no


def test_builtins_are_registered_under_short_names() -> None:
    assert {"correctness", "schema", "terminology", "negatives", "overreach", "length"} <= set(REGISTRY)
    assert all(get(n).source == "built-in" and get(n).doc for n in ("correctness", "length"))
    with pytest.raises(ConfigError, match="did you mean 'terminology'"):
        get("terminolgy")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("No pneumothorax.", "no"),
        ("There is no pleural effusion.", "no"),
        ("Yes, a small left pneumothorax.", "yes"),
        ("没有气胸。", "no"),
        ("未见气胸。", "no"),
        ("无", "no"),
        ("否，肺野清晰。", "no"),
        ("不是。", "no"),
        ("是的，左侧气胸。", "yes"),
        ("有少量积液。", "yes"),
        ("The lungs are clear.", None),
    ],
)
def test_yes_no(text: str, want: str | None) -> None:
    assert yes_no(text) == want


def test_correctness_zh_and_en() -> None:
    answers = ["No pneumothorax.", "Yes, there is one.", "未见气胸。", "有气胸。", "Hard to say."]
    refs = ["No.", "No.", "否", "否", "No."]
    assert get("correctness")(answers, reference=refs) == [1.0, 0.0, 1.0, 0.0, 0.0]
    # no reference, or an open reference: no signal
    assert get("correctness")(["Yes."], reference=[None]) == [0.0]
    assert get("correctness")(["Yes."], reference=["A 2 cm nodule in the left lower lobe."]) == [0.0]


def test_schema() -> None:
    valid = (
        '{"findings": "Clear lungs", "location": "chest", "size": "n/a", "impression": "Normal", '
        '"confidence": "high", "recommendations": "None"}'
    )
    answers = [
        valid,
        "Here it is:\n```json\n" + valid + "\n```",
        '{"findings": "Clear lungs", "confidence": "sure"}',  # 2 of 6 fields, invalid confidence
        "Clear lungs.",
        "[1, 2]",
    ]
    assert get("schema")(answers) == [1.0, 1.0, pytest.approx(0.5 * 2 / 6), 0.0, 0.0]


def test_terminology() -> None:
    answers = [
        "左下肺野见一结节。",  # 左下肺野 + 结节: standard only
        "左边下面有个疙瘩。",  # 左边下面 + 疙瘩: colloquial only
        "Small left pleural effusion, i.e. water on the lung.",  # one of each
        "Cardiomegaly and bilateral pleural effusion; looks fine otherwise.",  # 3 standard, 1 colloquial
        "The image is clear.",  # neither
    ]
    assert get("terminology")(answers) == [1.0, -1.0, 0.0, 0.5, 0.0]
    lex = lexicon()
    assert len(lex.standard) >= 50 and len(lex.colloquial) >= 60
    assert "左下肺野" in lex.standard and "water on the lung" in lex.colloquial
    assert not set(lex.standard) & set(lex.colloquial)  # no term is both
    # each colloquial phrase alone scores -1, each standard term alone +1 (no term hides inside another)
    assert set(get("terminology")(list(lex.colloquial))) == {-1.0}
    assert set(get("terminology")(list(lex.standard))) == {1.0}


def test_negatives() -> None:
    assert negated_findings("No pneumothorax or pleural effusion. Heart normal.") == {
        "pneumothorax",
        "pleural effusion",
    }
    assert negated_findings("未见气胸及胸腔积液征象，心影不大。") == {"气胸", "胸腔积液"}
    ref_en = "No pneumothorax or pleural effusion."
    ref_zh = "双肺纹理清晰，未见气胸、胸腔积液。"
    answers = [
        "There is no pneumothorax and no effusion.",
        "No pneumothorax.",
        "Small pleural effusion.",
        "未见气胸，无胸腔积液。",
        "无气胸。",
        "Lungs clear.",
    ]
    refs = [ref_en, ref_en, ref_en, ref_zh, ref_zh, "Lungs clear."]
    assert get("negatives")(answers, reference=refs) == [1.0, 0.5, 0.0, 1.0, 0.5, 0.0]


def test_overreach() -> None:
    answers = [
        "Definitely pneumonia.",
        "Pneumonia in the right lower lobe.",
        "Possible pneumonia.",
        "确诊为肺炎。",
        "考虑肺炎可能。",
        "Definitely pneumonia.",
    ]
    refs = ["Possible pneumonia."] * 3 + ["右下肺炎症，考虑肺炎。"] * 2 + ["Right lower lobe pneumonia."]
    assert get("overreach")(answers, reference=refs) == [-1.0, -0.5, 0.0, -1.0, 0.0, 0.0]


def test_length() -> None:
    answers = ["No pneumothorax.", "No pneumothorax is seen on this film.", "未见气胸。", "", "word " * 30]
    refs = ["No pneumothorax.", "No pneumothorax.", "未见气胸及积液。", "No.", None]
    # 2/2 words; 2 of 7 words; 4 of 7 characters; empty; 30 words against the default target of 60
    assert get("length")(answers, reference=refs) == pytest.approx([1.0, 2 / 7, 4 / 7, 0.0, 0.5])


def test_thinking_span_is_removed() -> None:
    assert answer_text("<unused94>thought: maybe yes<unused95>No pneumothorax.") == "No pneumothorax."
    assert answer_text([{"role": "assistant", "content": "未见气胸。"}]) == "未见气胸。"


def test_weights() -> None:
    assert parse_spec("terminology=0.5") == ("terminology", 0.5)
    assert parse_spec("length") == ("length", 1.0)
    with pytest.raises(ConfigError, match="not a number"):
        parse_spec("length=heavy")
    with pytest.raises(ConfigError, match="given twice"):
        resolve_rewards(["length", "length=2"])
    with pytest.raises(ConfigError, match="No reward was chosen"):
        resolve_rewards([])


def _plugin(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("from medvlab.train.rewards import reward\n\n" + body, encoding="utf-8")
    return path


def test_plugin_registers_and_scores(tmp_path: Path) -> None:
    path = _plugin(
        tmp_path,
        "side.py",
        '@reward("names_side")\n'
        "def names_side(completions, laterality):\n"
        '    """1.0 when the answer names the record\'s side."""\n'
        "    return [float(s in c.lower()) for c, s in zip(completions, laterality)]\n",
    )
    assert load_plugin(path) == ["names_side"]
    rw = get("names_side")
    assert rw.source == str(path.resolve()) and rw.fields == {"laterality"}
    assert rw(
        ["Left lower lobe nodule.", "Right apex."], laterality=["left", "left"], reference=[None, None]
    ) == [
        1.0,
        0.0,
    ]
    with pytest.raises(ConfigError, match="needs the record field.*laterality"):
        rw(["x"], reference=["y"])
    assert load_plugin(path) == ["names_side"]  # loading twice is harmless


@pytest.mark.parametrize(
    ("name", "body", "match"),
    [
        ("syntax.py", "def f(:\n", "syntax error on line 3"),
        ("boom.py", "raise RuntimeError('no GPU here')\n", "raised RuntimeError on import: no GPU here"),
        ("empty.py", "X = 1\n", "registered no reward"),
        ("sig.py", '@reward("sig")\ndef f(answers, **kw):\n    return [0.0]\n', "`completions` as its first"),
        (
            "ret.py",
            '@reward("ret")\ndef f(completions, **kw):\n    return 1.0\n',
            "returned float, not a list",
        ),
        (
            "nan.py",
            '@reward("nan_r")\ndef f(completions, **kw):\n    return [float("nan")] * len(completions)\n',
            "not a finite number",
        ),
        ("few.py", '@reward("few")\ndef f(completions, **kw):\n    return [1.0]\n', "1 score.*2 completion"),
        (
            "clash.py",
            '@reward("length")\ndef f(completions, **kw):\n    return [0.0] * len(completions)\n',
            "already registered by built-in",
        ),
    ],
)
def test_bad_plugins_are_one_clear_error(tmp_path: Path, name: str, body: str, match: str) -> None:
    path = _plugin(tmp_path, name, body)
    with pytest.raises(ConfigError, match=match) as info:
        load_plugin(path)
    assert name in str(info.value)  # the message names the file


def test_missing_or_non_python_plugin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist.*--reward-plugin"):
        load_plugin(tmp_path / "nope.py")
    (tmp_path / "r.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a .py file"):
        load_plugin(tmp_path / "r.txt")
