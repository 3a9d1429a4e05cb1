"""Real edit datasets -> EditRequest: ZsRE, CounterFact (both layouts), WikiBigEdit, KnowEdit, MQuAKE.

Each loader reads a local JSON (a list of records) or JSONL file, or a Hugging Face dataset id when a
hub is reachable. Every problem names the file, the record (index and case id) and the field. A record
that cannot become an edit (e.g. its subject is not in its prompt) is fatal by default
(`on_bad_record='fail'`) or skipped and counted (`'skip'`), never silently dropped.
"""
from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from editbench.core import ConfigError, DataError, EditRequest

BAD_RECORD_POLICIES = ("fail", "skip")


@dataclass
class LoadedEdits:
    name: str
    source: str
    requests: list[EditRequest]
    fluency_prompts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one message per skipped record
    total_records: int = 0


def read_records(path_or_id: str) -> tuple[list[dict], str]:
    """Records of a local .json (list) / .jsonl file, or of a hub dataset id (train split)."""
    path = Path(path_or_id)
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".jsonl":
            records = []
            for line_no, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from None
        else:
            try:
                records = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
            if isinstance(records, dict) and isinstance(records.get("data"), list):
                records = records["data"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise DataError(f"{path}: expected a JSON list of records (objects)")
        return records, str(path)
    if "/" not in path_or_id or path_or_id.startswith((".", "/")):
        raise ConfigError(f"data file '{path_or_id}' does not exist")
    try:
        import datasets

        return [dict(r) for r in datasets.load_dataset(path_or_id, split="train")], f"hf:{path_or_id}"
    except Exception as exc:  # offline or unknown id: say what to pass instead
        raise ConfigError(
            f"cannot load '{path_or_id}' from the Hugging Face hub ({type(exc).__name__}); "
            "pass a local JSON/JSONL file with --data instead"
        ) from None


class _Record:
    """Field access that names the file, record and field in every error."""

    def __init__(self, data: dict, source: str, index: int) -> None:
        self.data, self.source, self.index = data, source, index
        self.case_id = str(data.get("case_id", index))

    @property
    def where(self) -> str:
        return f"{self.source}: record {self.index} (case_id {self.case_id})"

    def fail(self, name: str, why: str) -> DataError:
        return DataError(f"{self.where}: field '{name}' {why}")

    def get(self, name: str, kind: type = str, required: bool = True, within: dict | None = None):
        data = self.data if within is None else within
        if name not in data or data[name] is None:
            if required:
                raise self.fail(name, "is missing")
            return None
        value = data[name]
        if not isinstance(value, kind):
            names = "/".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
            raise self.fail(name, f"must be {names}, got {type(value).__name__}")
        return value

    def text(self, value, name: str) -> str:
        """The first string inside nested lists (KnowEdit ground truths are alias lists, maybe nested)."""
        while isinstance(value, list) and value:
            value = value[0]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, "must hold a non-empty string")
        return value


def _request(rec: _Record, **fields) -> EditRequest:
    # EditRequest's own checks (e.g. subject in prompt) name source and case id in their errors
    return EditRequest(case_id=rec.case_id, source=rec.source, **fields)


def zsre(rec: _Record) -> EditRequest:
    answers = rec.get("answers", list)
    return _request(
        rec, prompt=rec.get("src"), subject=rec.get("subject"), target_new=rec.get("alt"),
        target_true=rec.text(answers, "answers") if answers else None,
        rephrase_prompts=(rec.get("rephrase"),),
        # the "nq question: " prefix is kept, as in MEND/ROME/EasyEdit
        locality=((rec.get("loc"), rec.text(rec.get("loc_ans", (str, list)), "loc_ans")),),
    )


def counterfact(rec: _Record) -> EditRequest:
    """Flat EasyEdit layout, or the original ROME layout (detected by `requested_rewrite`)."""
    if "requested_rewrite" not in rec.data:
        rephrase = rec.get("rephrase_prompt", (str, list), required=False)
        return _request(
            rec, prompt=rec.get("prompt"), subject=rec.get("subject"), target_new=rec.get("target_new"),
            target_true=rec.get("ground_truth", required=False),
            rephrase_prompts=tuple([rephrase] if isinstance(rephrase, str) else rephrase or ()),
            locality=((rec.get("locality_prompt"), rec.get("locality_ground_truth")),),
        )
    rewrite = rec.get("requested_rewrite", dict)
    template, subject = rec.get("prompt", within=rewrite), rec.get("subject", within=rewrite)
    if "{}" not in template:
        raise rec.fail("requested_rewrite.prompt", f"has no '{{}}' for the subject: {template!r}")
    target_new = rec.get("str", within=rec.get("target_new", dict, within=rewrite))
    target_true = rec.get("str", within=rec.get("target_true", dict, within=rewrite))
    neighbours = rec.get("neighborhood_prompts", list, required=False) or []
    return _request(
        rec, prompt=template.format(subject), subject=subject, target_new=target_new, target_true=target_true,
        rephrase_prompts=tuple(rec.get("paraphrase_prompts", list, required=False) or ()),
        # neighbourhood subjects share the edited subject's true object (ROME's neighborhood score)
        locality=tuple((p, target_true) for p in neighbours),
    )


def wikibigedit(rec: _Record) -> EditRequest:
    return _request(
        rec, prompt=rec.get("prompt"), subject=rec.get("subject"), target_new=rec.get("target_new"),
        rephrase_prompts=(rec.get("rephrase_prompt"),),
        locality=((rec.get("locality_prompt"), rec.get("locality_ground_truth")),),
    )


def _knowedit_pairs(rec: _Record, name: str) -> tuple[tuple[str, str], ...]:
    groups = rec.get(name, dict, required=False) or {}
    pairs = []
    for kind, items in groups.items():
        if not isinstance(items, list):
            raise rec.fail(f"{name}.{kind}", "must be a list of {prompt, ground_truth}")
        for j, item in enumerate(items):
            if not isinstance(item, dict) or "prompt" not in item or "ground_truth" not in item:
                raise rec.fail(f"{name}.{kind}[{j}]", "must have 'prompt' and 'ground_truth'")
            pairs.append((rec.text(item["prompt"], f"{name}.{kind}[{j}].prompt"),
                          rec.text(item["ground_truth"], f"{name}.{kind}[{j}].ground_truth")))
    return tuple(pairs)


def knowedit(rec: _Record) -> EditRequest:
    truth = rec.data.get("ground_truth")
    rephrase = rec.data.get("rephrase_prompt", rec.data.get("rephrase"))
    return _request(
        rec, prompt=rec.get("prompt"), subject=rec.get("subject"), target_new=rec.text(rec.data.get("target_new"),
                                                                                      "target_new"),
        target_true=rec.text(truth, "ground_truth") if truth not in (None, "", []) else None,
        rephrase_prompts=(rec.text(rephrase, "rephrase_prompt"),) if rephrase else (),
        locality=_knowedit_pairs(rec, "locality"), portability=_knowedit_pairs(rec, "portability"),
    )


def mquake(rec: _Record) -> list[EditRequest]:
    """One edit per requested rewrite; the case's multi-hop questions (with the new answer) become
    portability pairs of its last rewrite, the point at which the whole chain has been edited."""
    rewrites = rec.get("requested_rewrite", list)
    if not rewrites:
        raise rec.fail("requested_rewrite", "is empty")
    new_answer = rec.get("new_answer")
    questions = tuple((q, new_answer) for q in rec.get("questions", list))
    out = []
    for j, rw in enumerate(rewrites):
        if not isinstance(rw, dict):
            raise rec.fail(f"requested_rewrite[{j}]", "must be an object")
        template, subject = rec.get("prompt", within=rw), rec.get("subject", within=rw)
        question = rw.get("question")
        out.append(EditRequest(
            case_id=f"{rec.case_id}.{j}", source=rec.source,
            prompt=template.format(subject), subject=subject,
            target_new=rec.get("str", within=rec.get("target_new", dict, within=rw)),
            target_true=rec.get("str", within=rec.get("target_true", dict, within=rw)),
            rephrase_prompts=(question,) if isinstance(question, str) and question.strip() else (),
            portability=questions if j == len(rewrites) - 1 else (),
        ))
    return out


LOADERS: dict[str, Callable[[_Record], EditRequest | list[EditRequest]]] = {
    "zsre": zsre, "counterfact": counterfact, "wikibigedit": wikibigedit, "knowedit": knowedit, "mquake": mquake,
}


def load_edits(name: str, path_or_id: str, limit: int | None = None, shuffle: bool = False, seed: int = 0,
               on_bad_record: str = "fail") -> LoadedEdits:
    """Records -> requests. `shuffle` reorders records with `seed` before `limit` takes the first N."""
    if name not in LOADERS:
        raise ConfigError(f"unknown benchmark '{name}' (valid: world, {', '.join(LOADERS)})")
    if on_bad_record not in BAD_RECORD_POLICIES:
        raise ConfigError(f"--on-bad-record {on_bad_record!r} (valid: {', '.join(BAD_RECORD_POLICIES)})")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    records, source = read_records(path_or_id)
    order = list(range(len(records)))
    if shuffle:
        random.Random(seed).shuffle(order)
    requests, skipped, fluency = [], [], []
    for index in order:
        if limit is not None and len(requests) >= limit:
            break
        rec = _Record(records[index], source, index)
        try:
            made = LOADERS[name](rec)
        except DataError as exc:
            if on_bad_record == "fail":
                raise
            skipped.append(str(exc))
            continue
        requests += made if isinstance(made, list) else [made]
        fluency += [p for p in records[index].get("generation_prompts", []) if isinstance(p, str)][:1]
    if limit is not None:
        requests = requests[:limit]
    if not requests:
        raise DataError(f"{source}: no usable records ({len(skipped)} skipped)")
    return LoadedEdits(name=name, source=source, requests=requests, fluency_prompts=fluency[:8], skipped=skipped,
                       total_records=len(records))
