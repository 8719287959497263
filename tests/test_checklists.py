"""Role-play checklists (psychological-patterns HumanLLM, arXiv 2601.10198): the loader on
fixtures written from the documented schema, the thought/action/speech parser, the lexical
``keyword`` baseline judge and the scoring arithmetic on hand-built cases, and the LLM judge
path once on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from humanllm_ray.config import load_config
from humanllm_ray.evaluate.checklists import (
    JUDGES,
    ChecklistItem,
    ChecklistRequest,
    KeywordJudge,
    character_score,
    content_stems,
    load_pattern_dataset,
    make_judge,
    parse_turn,
    plan_slots,
    requests_for,
    roleplay_messages,
    score_requests,
    stem,
    summarize_scores,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "humanllm_patterns"
BOOT = dict(samples=200, confidence=0.95, seed=0)


@pytest.fixture(scope="module")
def dataset():
    return load_pattern_dataset(str(FIXTURES))


# --------------------------------------------------------------------------- loader


def test_loader_reads_every_documented_layer(dataset):
    assert dataset.root.endswith("Dataset")  # the repo folder or Dataset/ itself both work
    assert set(dataset.patterns) == {"impostor syndrome", "conflict avoidance", "defensive pessimism"}
    imp = dataset.patterns["impostor syndrome"]
    assert imp.name == "Impostor Syndrome" and "fraud" in imp.description and "cognitive" in imp.core_mechanisms
    checks = dataset.pattern_checklists["conflict avoidance"]
    assert [c.question for c in checks] == ["Does the character change the subject when tension rises?",
                                            "Does the character quickly agree to keep the peace?"]
    assert checks[1].evidence_status == "partially supported" and checks[0].level == "pattern"

    assert [s.scenario_id for s in dataset.scenarios] == ["s1", "s2", "s2#variation"]
    s1, s2, var = dataset.scenarios
    assert s1.protagonist == "Lena" and set(s1.characters) == {"Lena", "Marcus"} and s1.split == "id_eval"
    assert s1.characters["Marcus"].about_self.startswith("A team lead") and "report was two days late" in s1.background
    assert s1.patterns == ["Impostor Syndrome", "Conflict Avoidance"] and s1.situation == "evaluation"
    assert [t.char for t in s1.conversation] == ["Marcus", "Lena", "Marcus", "Lena"]
    assert s1.checklist["Marcus"] == ["Does Marcus avoid mentioning the missed deadline?"]
    assert s2.checklist["Omar"] == ["Does Omar list ways the pitch could fail?"]  # {"question": ...} items
    assert s2.char2pattern["Priya"] == ["Conflict Avoidance"]  # a bare string is one pattern
    assert var.variation and var.conversation == [] and "postponed" in var.background
    assert var.checklist == {"Omar": ["Does Omar make a plan for next month?"]}

    lena = dataset.checklist_for(s1, "Lena")  # scenario level first, then her patterns' items
    assert [(i.level, i.source) for i in lena] == [("scenario", "s1"), ("scenario", "s1"),
                                                   ("pattern", "Impostor Syndrome"), ("pattern", "Impostor Syndrome")]
    assert load_pattern_dataset(str(FIXTURES / "Dataset"), include_variations=False).scenarios[-1].scenario_id == "s2"


def test_loader_names_lfs_pointers_and_missing_splits(tmp_path):
    split = tmp_path / "Dataset" / "split"
    split.mkdir(parents=True)
    (split / "id_eval.json").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0f1e\nsize 1823663\n"
    )
    with pytest.raises(ValueError, match="Git-LFS pointer"):
        load_pattern_dataset(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ood_eval"):
        load_pattern_dataset(str(tmp_path), splits=["ood_eval"])


# --------------------------------------------------------------------------- parser


@pytest.mark.parametrize(
    "text, thought, action, speech",
    [
        ("[They'll find out.] (grips the mug) I'm fine, really.", "They'll find out.", "grips the mug", "I'm fine, really."),
        ("Just words, no markers.", "", "", "Just words, no markers."),
        ("(sighs) Okay. [Not again.] (looks away) Fine, \"whatever\".", "Not again.", "sighs looks away", "Okay. Fine, \"whatever\"."),
        ("(shrugs (again)) Sure.", "", "shrugs (again)", "Sure."),  # same kind nested: stays inside
        ("[I hate (this) part] Right.", "I hate (this) part", "", "Right."),  # other kind inside: literal
        ("Wait... [this never ends", "this never ends", "", "Wait..."),  # unclosed: runs to the end
        ("【真的吗】（低头）好的。", "真的吗", "低头", "好的。"),  # full-width brackets
        ("Lena: [Breathe.] \"It was luck.\"", "Breathe.", "", "It was luck."),  # speaker label, quotes
        ("  [ a \n thought ]   (  an   action )  ", "a thought", "an action", ""),
    ],
)
def test_parse_turn(text, thought, action, speech):
    parts = parse_turn(text, name="Lena")
    assert (parts.thought, parts.action, parts.speech) == (thought, action, speech)


# --------------------------------------------------------------------------- judge + arithmetic


def test_keyword_judge_is_a_labelled_lexical_baseline():
    assert set(JUDGES) >= {"keyword", "llm"}
    judge = make_judge("keyword")
    assert isinstance(judge, KeywordJudge) and "not an LLM" in judge.description and judge.identity() == "keyword:0.5"
    assert stem("exposed") == stem("expose") == "expos" and stem("worries") == "worry" and stem("mentioning") == "mentio"
    # Question boilerplate, function words and character names carry nothing; possessives are cut.
    assert content_stems("Does the character show any signs of Omar's worries?", ["Omar"]) == ["worry"]
    assert judge.answer("Does Lena attribute her success to luck?", "Honestly, the success was mostly luck.", ["Lena"]) is True  # 2/3
    assert judge.answer("Does the character call their achievement luck?", "It was luck.") is False  # 1/3 < 0.5
    assert judge.answer("Does the character do it?", "anything") is None  # no content word: no verdict
    assert KeywordJudge(threshold=0.3).answer("Does the character call their achievement luck?", "It was luck.") is True
    with pytest.raises(ValueError, match="unknown checklist judge"):
        make_judge("oracle")


def _items(*levels):
    return [ChecklistItem(f"q{k}", level, "src") for k, level in enumerate(levels)]


def test_character_score_arithmetic():
    items = _items("scenario", "scenario", "pattern", "pattern", "pattern")
    answers = [
        [True, False, None, False, None],   # turn 1
        [False, False, None, True, None],   # turn 2
        [True, None, None, False, None],    # turn 3
    ]
    s = character_score(items, answers)
    # scenario: item0 yes (turns 1, 3), item1 judged never yes -> 1 of 2; pairs: 2 yes of 5 judged.
    assert s["scenario"] == {"items": 2, "judged": 2, "satisfied": 1, "score": 0.5, "turn_rate": 2 / 5}
    # pattern: item2 and item4 never judged (left out), item3 yes in turn 2 -> 1 of 1; pairs 1 of 3.
    assert s["pattern"] == {"items": 3, "judged": 1, "satisfied": 1, "score": 1.0, "turn_rate": 1 / 3}
    assert s["all"] == {"items": 5, "judged": 3, "satisfied": 2, "score": 2 / 3, "turn_rate": 3 / 8}
    none = character_score(_items("scenario"), [[None], [None]])
    assert none["scenario"]["score"] is None and none["scenario"]["turn_rate"] is None
    assert character_score(_items("pattern"), [])["all"]["score"] is None  # no turns: nothing judged


def test_reference_turns_scored_with_the_keyword_judge(dataset):
    slots = plan_slots(dataset, max_scenarios=10, max_turns=3)
    # Every checklist character of s1/s2 at its dataset turns; the variation has no conversation.
    assert [(s.scenario.scenario_id, s.character, s.turn_index) for s in slots] == [
        ("s1", "Lena", 0), ("s1", "Lena", 1), ("s1", "Marcus", 0), ("s1", "Marcus", 1),
        ("s2", "Omar", 0), ("s2", "Priya", 0), ("s2#variation", "Omar", 0), ("s2#variation", "Priya", 0)]
    assert slots[-1].reference is None and slots[0].reference.startswith("[If they only knew")
    requests = requests_for(dataset, slots, "reference", [s.reference for s in slots])
    assert len(requests) == 6  # the two variation slots have no reference turn
    answers = KeywordJudge().judge(requests)
    assert answers == [
        [True, False, False, False],  # Lena 1: 'success', 'luck' (2/3 of attribute/success/luck)
        [False, False, True, False],  # Lena 2: 'fraud', 'expose' (2/3 of fear/exposed/fraud)
        [False, False, False],        # Marcus 1
        [False, True, False],         # Marcus 2: 'change the subject' (2/4)
        [False, True],                # Omar: 'imagine the worst outcome before the event' (5/5)
        [False, False, True],         # Priya: 'agree', 'keeps', 'peace' (3/4)
    ]
    per = {c["character"]: c for c in score_requests(requests, answers)}
    assert per["Lena"]["turns"] == 2 and per["Lena"]["all"]["satisfied"] == 2 and per["Lena"]["all"]["score"] == 0.5
    assert per["Marcus"]["scenario"]["score"] == 0.0 and per["Marcus"]["pattern"]["score"] == 0.5
    assert per["Omar"]["pattern"]["score"] == 1.0 and per["Priya"]["all"]["score"] == pytest.approx(1 / 3)
    summary = summarize_scores(list(per.values()), BOOT)["reference"]
    assert summary["characters"] == 4 and summary["turns"] == 6
    assert summary["all"]["score"] == pytest.approx((0.5 + 1 / 3 + 0.5 + 1 / 3) / 4)
    assert summary["all"]["pooled"] == pytest.approx(5 / 12) and summary["scenario"]["pooled"] == pytest.approx(1 / 5)
    lo, hi = summary["all"]["score_ci"]
    assert lo <= summary["all"]["score"] <= hi


def test_roleplay_prompt_follows_the_sharegpt_roles(dataset):
    s1 = dataset.scenarios[0]
    msgs = roleplay_messages(s1, "Lena", 3)  # before Lena's second turn
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[0]["content"].startswith("You are Lena.") and "[square brackets]" in msgs[0]["content"]
    assert msgs[1]["content"].startswith("Marcus: (slides the report") and msgs[2]["content"] == s1.conversation[1].content
    opener = roleplay_messages(dataset.scenarios[1], "Priya", 1)  # Omar opened the scene
    assert [m["role"] for m in opener] == ["system", "user"] and opener[1]["content"].startswith("Omar: ")
    own_opener = roleplay_messages(dataset.scenarios[1], "Omar", 2)
    assert [m["role"] for m in own_opener] == ["system", "user", "assistant", "user"]
    assert own_opener[1]["content"] == "(The scene begins.)"


def test_llm_checklist_judge_on_two_turns(dataset):
    """The LLM judge path for real (hf engine, tiny model, schema-constrained): every item gets
    a boolean, items split into requests of eval.checklist_items_per_request."""
    cfg = load_config(overrides=["eval.checklist_items_per_request=3"])
    judge = make_judge("llm", cfg)
    assert judge.identity().startswith("llm:hf:")
    s1 = dataset.scenarios[0]
    reqs = [
        ChecklistRequest("m", "s1", "Lena", 0, t, parse_turn(t), dataset.checklist_for(s1, "Lena"), s1.background, ("Lena", "Marcus"))
        for t in ("[It was luck.] (looks down) Thanks, I guess.", "(smiles) I worked hard on it.")
    ]
    try:
        answers = judge.judge(reqs)  # 4 items -> chunks of 3 + 1 per turn
    finally:
        judge.holder.close()
    assert [len(a) for a in answers] == [4, 4]
    assert all(isinstance(x, bool) for a in answers for x in a)
    json.dumps(answers)
