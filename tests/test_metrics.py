import math
from types import SimpleNamespace

import pytest
import torch

from editbench.core import EditRequest, ExamQuestion
from editbench.harness import metrics
from editbench.harness.scoring import encode_prompt_target, score_targets


class CharTokenizer:
    """One token per character (ids = code points); pad 0."""

    pad_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        return SimpleNamespace(input_ids=[ord(c) for c in text])


class ShiftModel(torch.nn.Module):
    """Predicts the next character code point: logits peak at id + 1 (a hand-made, known model)."""

    config = SimpleNamespace(model_type="toy")

    def __init__(self, vocab=128):
        super().__init__()
        self.vocab = vocab
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        logits = torch.full((*input_ids.shape, self.vocab), -10.0)
        logits.scatter_(-1, ((input_ids + 1) % self.vocab).unsqueeze(-1), 10.0)
        return SimpleNamespace(logits=logits)


@pytest.fixture
def toy_lm():
    return SimpleNamespace(model=ShiftModel(), tokenizer=CharTokenizer(), device=torch.device("cpu"))


def test_prompt_target_split_adds_space():
    prompt_ids, target_ids = encode_prompt_target(CharTokenizer(), "ab", "cd")
    assert prompt_ids == [97, 98] and target_ids == [32, 99, 100]


def test_token_accuracy_known_answer(toy_lm):
    # prompt "ab", target " cd": after 'b' the model says 'c' (wrong, ' ' expected), after ' ' it says '!'
    # (wrong), after 'c' it says 'd' (right): 1 of 3 tokens.
    [score] = score_targets(toy_lm, [("ab", "cd")])
    assert score.token_accuracy == pytest.approx(1 / 3) and not score.exact
    [exact] = score_targets(toy_lm, [("ab", "!\"#")])  # "ab" then " !\"#": ' '+1 = '!', '!'+1='"', ...
    assert exact.target_ids == [32, 33, 34, 35] and exact.token_accuracy == pytest.approx(3 / 4)
    [s] = score_targets(toy_lm, [("a ", "!")])  # prompt ends with space: target is just "!", predicted
    assert s.exact and s.logprobs[0] == pytest.approx(0.0, abs=1e-6)


def test_batched_scores_equal_single(toy_lm):
    pairs = [("ab", "cd"), ("hello world", "xyz"), ("q", "rs")]
    batched = score_targets(toy_lm, pairs, batch_size=3)
    single = [score_targets(toy_lm, [p])[0] for p in pairs]
    assert [b.top1 for b in batched] == [s.top1 for s in single]


def test_edit_scores_reliability_locality(toy_lm):
    req = EditRequest(case_id="1", prompt="x ab", subject="ab", target_new="cd", rephrase_prompts=("ab",),
                      locality=(("pq", "rs"),))
    pre = metrics.locality_top1(toy_lm, [req])
    [row] = metrics.edit_scores(toy_lm, [req], pre)
    assert row["reliability"] == pytest.approx(1 / 3)
    assert row["generalization"] == pytest.approx(1 / 3)
    assert row["locality"] == 1.0  # same model before and after
    assert row["portability"] is None
    shifted = [[[t + 1 for t in pair] for pair in req_pairs] for req_pairs in pre]
    [row] = metrics.edit_scores(toy_lm, [req], shifted)
    assert row["locality"] == 0.0


def test_ngram_entropy_known_values():
    # "a b a b": bigrams (a,b),(b,a),(a,b): p = 2/3, 1/3 -> H2 = 0.9183; trigrams (a,b,a),(b,a,b): H3 = 1.
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert metrics.ngram_entropy("a b a b") == pytest.approx((2 / 3 * h2 + 4 / 3 * 1.0) / 2)
    assert metrics.ngram_entropy("the the the the the") == 0.0
    assert metrics.fluency([]) is None


def test_exam_picks_highest_likelihood_option(toy_lm):
    # After "ab" the shift model continues " !\"#...": option "!\"" is the likely one.
    q = ExamQuestion(qid="1", question="ab", options=("zz", "!\"", "qq", "a"), answer="B")
    wrong = ExamQuestion(qid="2", question="ab", options=("zz", "!\"", "qq", "a"), answer="A")
    assert metrics.exam_predictions(toy_lm, metrics.prepare_exam(toy_lm, [q, wrong], "cloze")) == [1, 1]
    assert metrics.exam_accuracy(toy_lm, [q, wrong]) == 0.5


def _letter_question(qid, answer, cue_char, sep="", category="STEM"):
    return ExamQuestion(qid=qid, question="q", options=("w", "x", "y", "z"), answer=answer, category=category,
                        prompt=f"question {qid}\nA. w\nB. x\nC. y\nD. z\nAnswer" + cue_char, letter_sep=sep)


def test_letter_scoring_reads_the_answer_letter_after_the_cue(toy_lm):
    """The shift model writes chr(last + 1) next: a cue ending in '@' plants 'A', 'A' plants 'B', and so on.
    With the planted letter equal to the answer every question is right; one letter off, every one is wrong."""
    planted = [_letter_question(str(i), a, chr(ord(a) - 1)) for i, a in enumerate("ABCDDCBA")]
    prepared = metrics.prepare_exam(toy_lm, planted, "letter")
    assert prepared.letter_ids[0] == [ord(c) for c in "ABCD"]
    assert metrics.exam_scores(toy_lm, prepared)["accuracy"] == 1.0
    off_by_one = [_letter_question(str(i), a, chr(ord(a) - 2), category="Other") for i, a in enumerate("BCD")]
    scores = metrics.exam_scores(toy_lm, metrics.prepare_exam(toy_lm, planted[:2] + off_by_one, "letter"))
    assert scores["accuracy"] == pytest.approx(2 / 5)
    assert scores["by_category"] == {"Other": 0.0, "STEM": 1.0}
    # with a space separator the one-character tokenizer starts every letter with the same ' ' token:
    # letter scoring cannot tell the options apart, and says so
    with pytest.raises(Exception, match="distinct tokens"):
        metrics.prepare_exam(toy_lm, [_letter_question("s", "A", "@", sep=" ")], "letter")
    with pytest.raises(Exception, match="no letter-mode prompt"):
        metrics.prepare_exam(toy_lm, [ExamQuestion(qid="n", question="q", options=("a", "b"), answer="A")], "letter")


def test_aggregate_skips_missing():
    rows = [{"a": 1.0, "b": None}, {"a": 0.0, "b": None}]
    assert metrics.aggregate(rows, ["a", "b"]) == {"a": 0.5, "b": None}
