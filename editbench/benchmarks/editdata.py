"""Real edit datasets -> EditRequest: ZsRE, CounterFact (both layouts), WikiBigEdit, KnowEdit, MQuAKE.

Each loader reads a local JSON (a list of records) or JSONL file, or a Hugging Face dataset id when a
hub is reachable. Every problem names the file, the record (index and case id) and the field. A record
that cannot become an edit (e.g. its subject is not in its prompt) is fatal by default
(`on_bad_record='fail'`) or skipped and counted (`'skip'`), never silently dropped.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import re
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

from editbench.harness.results import read_jsonl
from editbench.core import ConfigError, DataError, EditRequest, Registry, setting

BAD_RECORD_POLICIES = ("fail", "skip")


@dataclass
class LoadedEdits:
    name: str
    source: str
    requests: list[EditRequest]
    fluency_prompts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one message per skipped record
    total_records: int = 0


def _jsonl_records(path: Path):
    """Records of a JSONL file, one line at a time (memory follows the records taken, not the file)."""
    return (record for _, record in read_jsonl(path))


class _TextStream:
    """A UTF-8 file read in blocks: `text[pos:]` is what is not consumed yet, so memory follows the
    records taken (and the largest record), not the file. Counts lines and bytes consumed for errors."""

    BLOCK = 1 << 20

    def __init__(self, fh, path: Path) -> None:
        self.fh, self.path = fh, path
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text, self.pos, self.eof, self.bytes_read, self.lines_before = "", 0, False, 0, 0

    def more(self) -> bool:
        """Read the next block (dropping what is consumed); False at the end of the file."""
        if self.eof:
            return False
        block = self.fh.read(self.BLOCK)
        self.eof = not block
        try:
            new = self.decoder.decode(block, final=self.eof)
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.path}: not UTF-8 text (byte {exc.object[exc.start:exc.start + 1]!r} at offset "
                            f"{self.bytes_read + exc.start}); convert it to UTF-8") from None
        self.bytes_read += len(block)
        self.lines_before += self.text.count("\n", 0, self.pos)
        self.text, self.pos = self.text[self.pos:] + new, 0
        return True

    def skip_space(self) -> None:
        while True:
            self.pos = _skip_space(self.text, self.pos)
            if self.pos < len(self.text) or not self.more():
                return

    def startswith(self, token: str) -> bool:
        self.skip_space()
        return self.text.startswith(token, self.pos)

    def decode(self, decoder: json.JSONDecoder):
        """The next JSON value, reading further blocks while it is cut off at the buffer's end."""
        while True:
            try:
                value, self.pos = decoder.raw_decode(self.text, self.pos)
                if self.pos < len(self.text) or self.eof:
                    return value
                # a value that ends exactly at the buffer's end may go on (a number): read on and retry
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise DataError(f"{self.path}: not valid JSON ({exc.msg} at line "
                                    f"{self.lines_before + exc.lineno})") from None
            self.more()


def _json_records(path: Path):
    """Records of a JSON list (or {"data": [...]}), read in blocks and decoded one element at a time,
    so records past `limit` are never read, and memory follows the records taken, not the file."""
    with open(path, "rb") as fh:
        stream = _TextStream(fh, path)
        if stream.startswith("{"):  # {"data": [...]} or a single object: parsed whole
            while stream.more():
                pass
            try:
                whole = json.loads(stream.text[stream.pos:])
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: not valid JSON ({exc.msg} at line {stream.lines_before + exc.lineno})") \
                    from None
            if not isinstance(whole.get("data"), list):
                raise DataError(f"{path}: expected a JSON list of records (objects)")
            yield from _checked(path, whole["data"])
            return
        if not stream.startswith("["):
            raise DataError(f"{path}: expected a JSON list of records (objects)")
        stream.pos += 1
        if stream.startswith("]"):
            return
        decoder, index = json.JSONDecoder(), 0
        while True:
            stream.skip_space()
            record = stream.decode(decoder)
            if not isinstance(record, dict):
                raise DataError(f"{path}: record {index} is a JSON {type(record).__name__}, expected an object")
            yield record
            index += 1
            if stream.startswith(","):
                stream.pos += 1
            elif stream.startswith("]"):
                stream.pos += 1
                stream.skip_space()
                if stream.pos < len(stream.text):
                    raise DataError(f"{path}: text after the closing ']' of the record list")
                return
            else:
                raise DataError(f"{path}: expected ',' or ']' after record {index - 1}")


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _checked(path: Path, records: list):
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}: record {index} is a JSON {type(record).__name__}, expected an object")
        yield record


def iter_records(path_or_id: str) -> tuple[Iterable[Any], str]:
    """(an iterator over the records, the source name) of a local .json (list) / .jsonl file, or of a
    hub dataset id (train split)."""
    path = Path(path_or_id)
    if path.is_dir():
        raise ConfigError(f"{setting('data')} {path}: is a directory; name the benchmark's JSON or JSONL file")
    if path.exists():
        return (_jsonl_records(path) if path.suffix == ".jsonl" else _json_records(path)), str(path)
    if "/" not in path_or_id or path_or_id.startswith((".", "/")):
        raise ConfigError(f"data file '{path_or_id}' does not exist")
    try:
        import datasets

        rows = [dict(r) for r in datasets.load_dataset(path_or_id, split="train")]
    except Exception as exc:  # offline or unknown id: say what to pass instead
        raise ConfigError(
            f"cannot load '{path_or_id}' from the Hugging Face hub ({type(exc).__name__}); "
            f"pass a local JSON/JSONL file with {setting('data')} instead"
        ) from None
    return iter(rows), f"hf:{path_or_id}"


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

    def get(self, name: str, kind: type | tuple[type, ...] = str, required: bool = True,
            within: dict | None = None) -> Any:
        data = self.data if within is None else within
        if name not in data or data[name] is None:
            if required:
                raise self.fail(name, "is missing")
            return None
        value = data[name]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = "/".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
            raise self.fail(name, f"must be {names}, got {type(value).__name__}")
        if isinstance(value, str) and not value.strip():
            raise self.fail(name, "is empty")
        return value

    def strings(self, name: str, required: bool = False, within: dict | None = None) -> tuple[str, ...]:
        """A string or a list of non-empty strings, as a tuple."""
        value = self.get(name, (str, list), required=required, within=within)
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        for j, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                why = "is empty" if isinstance(item, str) else f"must be a string, got {type(item).__name__}"
                raise self.fail(f"{name}[{j}]", why)
        return tuple(items)

    def fill(self, template: str, subject: str, name: str) -> str:
        """A '{}' template with the subject put in; any other format field is a data error."""
        if template.count("{}") != 1:
            raise self.fail(name, f"must contain '{{}}' exactly once for the subject, got {template!r}")
        try:
            return template.format(subject)
        except (KeyError, IndexError, ValueError) as exc:
            raise self.fail(name, f"has a stray format field ({type(exc).__name__}: {exc}) in {template!r}") from None

    def text(self, value, name: str) -> str:
        """The first string inside nested lists (KnowEdit ground truths are alias lists, maybe nested)."""
        while isinstance(value, list) and value:
            value = value[0]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, "must hold a non-empty string")
        return value


@dataclass(frozen=True)
class DatasetSpec:
    """A real edit dataset editbench reads: its name, a line on its layout, and the function that turns
    one of its records into edit requests."""

    name: str
    description: str
    loader: Callable[[_Record], EditRequest | list[EditRequest]]


DATASETS: Registry[DatasetSpec] = Registry("benchmark")


def register_dataset(name: str, description: str):
    """Declare a record loader as the dataset `name` (the benchmark setting names it, data the file)."""
    def decorate(loader: Callable[[_Record], EditRequest | list[EditRequest]]):
        DATASETS.add(name, DatasetSpec(name, description, loader))
        return loader

    return decorate


def _request(rec: _Record, names: dict[str, str] | None = None, **fields) -> EditRequest:
    """An EditRequest; its own checks (e.g. subject in prompt) are reported with the file's field
    names (`names`: request field -> the dataset's, e.g. prompt -> src)."""
    try:
        return EditRequest(case_id=rec.case_id, source=rec.source, **fields)
    except DataError as exc:
        message = str(exc).split(": field ", 1)[-1]
        for ours, theirs in (names or {}).items():
            message = message.replace(f"'{ours}'", f"'{theirs}'", 1) if message.startswith(f"'{ours}'") else message
        raise DataError(f"{rec.where}: field {message}") from None


@register_dataset("zsre", "ZsRE question answering edits (MEND/ROME layout: subject, src, rephrase, alt, answers, loc, loc_ans)")
def zsre(rec: _Record) -> EditRequest:
    answers = rec.get("answers", list)
    return _request(
        rec, names={"prompt": "src", "target_new": "alt"},
        prompt=rec.get("src"), subject=rec.get("subject"), target_new=rec.get("alt"),
        target_true=rec.text(answers, "answers") if answers else None,
        rephrase_prompts=rec.strings("rephrase", required=True),
        # the "nq question: " prefix is kept, as in MEND/ROME/EasyEdit
        locality=((rec.get("loc"), rec.text(rec.get("loc_ans", (str, list)), "loc_ans")),),
    )


@register_dataset("counterfact", "CounterFact counterfactual edits (flat EasyEdit layout or the original ROME requested_rewrite)")
def counterfact(rec: _Record) -> EditRequest:
    """Flat EasyEdit layout, or the original ROME layout (detected by `requested_rewrite`)."""
    if "requested_rewrite" not in rec.data:
        return _request(
            rec, prompt=rec.get("prompt"), subject=rec.get("subject"), target_new=rec.get("target_new"),
            target_true=rec.get("ground_truth", required=False),
            rephrase_prompts=rec.strings("rephrase_prompt"),
            locality=((rec.get("locality_prompt"), rec.get("locality_ground_truth")),),
        )
    rewrite = rec.get("requested_rewrite", dict)
    template, subject = rec.get("prompt", within=rewrite), rec.get("subject", within=rewrite)
    prompt = rec.fill(template, subject, "requested_rewrite.prompt")
    target_new = rec.get("str", within=rec.get("target_new", dict, within=rewrite))
    target_true = rec.get("str", within=rec.get("target_true", dict, within=rewrite))
    neighbours = rec.strings("neighborhood_prompts")
    return _request(
        rec, names={"prompt": "requested_rewrite.prompt", "subject": "requested_rewrite.subject"},
        prompt=prompt, subject=subject, target_new=target_new, target_true=target_true,
        rephrase_prompts=rec.strings("paraphrase_prompts"),
        # neighbourhood subjects share the edited subject's true object (ROME's neighborhood score)
        locality=tuple((p, target_true) for p in neighbours),
    )


@register_dataset("wikibigedit", "WikiBigEdit real-world knowledge updates (prompt, subject, target_new, rephrase, locality)")
def wikibigedit(rec: _Record) -> EditRequest:
    return _request(
        rec, prompt=rec.get("prompt"), subject=rec.get("subject"), target_new=rec.get("target_new"),
        rephrase_prompts=rec.strings("rephrase_prompt", required=True),
        locality=((rec.get("locality_prompt"), rec.get("locality_ground_truth")),),
    )


def _knowedit_pairs(rec: _Record, name: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    groups = rec.get(name, dict, required=False) or {}
    pairs, names = [], []
    for kind, items in groups.items():
        if not isinstance(items, list):
            raise rec.fail(f"{name}.{kind}", "must be a list of {prompt, ground_truth}")
        for j, item in enumerate(items):
            if not isinstance(item, dict) or "prompt" not in item or "ground_truth" not in item:
                raise rec.fail(f"{name}.{kind}[{j}]", "must have 'prompt' and 'ground_truth'")
            pairs.append((rec.text(item["prompt"], f"{name}.{kind}[{j}].prompt"),
                          rec.text(item["ground_truth"], f"{name}.{kind}[{j}].ground_truth")))
            names.append(group_name(kind))
    return tuple(pairs), tuple(names)


def group_name(kind: str) -> str:
    """KnowEdit's group key as a metric-name suffix: 'Subject_Aliasing' -> 'subject_aliasing'."""
    words = re.findall(r"[a-z0-9]+", str(kind).lower())
    return "_".join(words) if words and words[0][0].isalpha() else "_".join(["group", *words])


@register_dataset("knowedit", "KnowEdit (subject, prompt, target_new, ground_truth, portability{...}, locality{...})")
def knowedit(rec: _Record) -> EditRequest:
    truth = rec.data.get("ground_truth")
    rephrase = rec.data.get("rephrase_prompt", rec.data.get("rephrase"))
    return _request(
        rec, prompt=rec.get("prompt"), subject=rec.get("subject"), target_new=rec.text(rec.data.get("target_new"),
                                                                                      "target_new"),
        target_true=rec.text(truth, "ground_truth") if truth not in (None, "", []) else None,
        rephrase_prompts=(rec.text(rephrase, "rephrase_prompt"),) if rephrase else (),
        **_knowedit_groups(rec),
    )


def _knowedit_groups(rec: _Record) -> dict:
    locality, locality_groups = _knowedit_pairs(rec, "locality")
    portability, portability_groups = _knowedit_pairs(rec, "portability")
    return dict(locality=locality, locality_groups=locality_groups, portability=portability,
                portability_groups=portability_groups)


@register_dataset("mquake", "MQuAKE multi-hop: requested rewrites are edits, multi-hop questions portability pairs")
def mquake(rec: _Record) -> list[EditRequest]:
    """One edit per requested rewrite; the case's multi-hop questions (with the new answer) become
    portability pairs of its last rewrite, the point at which the whole chain has been edited."""
    rewrites = rec.get("requested_rewrite", list)
    if not rewrites:
        raise rec.fail("requested_rewrite", "is empty")
    new_answer = rec.get("new_answer")
    questions = tuple((q, new_answer) for q in rec.strings("questions", required=True))
    out = []
    for j, rw in enumerate(rewrites):
        if not isinstance(rw, dict):
            raise rec.fail(f"requested_rewrite[{j}]", "must be an object")
        template, subject = rec.get("prompt", within=rw), rec.get("subject", within=rw)
        question = rw.get("question")
        out.append(EditRequest(
            case_id=f"{rec.case_id}.{j}", source=rec.source,
            prompt=rec.fill(template, subject, f"requested_rewrite[{j}].prompt"), subject=subject,
            target_new=rec.get("str", within=rec.get("target_new", dict, within=rw)),
            target_true=rec.get("str", within=rec.get("target_true", dict, within=rw)),
            rephrase_prompts=(question,) if isinstance(question, str) and question.strip() else (),
            portability=questions if j == len(rewrites) - 1 else (),
        ))
    return out


# A dataset's records fall into the leaderboard's edits or the dev pool that tuning alone reads by a
# salted hash of each record's content: the same records on every machine and in any file order, and a
# record keeps its side when others are added or removed. One in DEV_SHARE records is dev.
SPLITS = ("edit", "dev", "all")
SPLIT_SALT = "editbench-split-v1"
DEV_SHARE = 5


def record_split(record: Any) -> str:
    """'dev' or 'edit': which side of the fixed split a dataset record is on."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(f"{SPLIT_SALT}\n{text}".encode()).digest()
    return "dev" if int.from_bytes(digest[:8], "big") % DEV_SHARE == 0 else "edit"


def load_edits(name: str, path_or_id: str, limit: int | None = None, shuffle: bool = False, seed: int = 0,
               on_bad_record: str = "fail", split: str = "all") -> LoadedEdits:
    """Records -> requests. Only the records of `split` ('edit', 'dev' or 'all': see `record_split`) are
    read; `shuffle` reorders them with `seed` before `limit` takes the first N."""
    if name not in DATASETS:
        raise ConfigError(f"unknown benchmark '{name}' (valid: world, {', '.join(DATASETS.names())})")
    if on_bad_record not in BAD_RECORD_POLICIES:
        raise ConfigError(f"{setting('on_bad_record')} {on_bad_record!r} (valid: {', '.join(BAD_RECORD_POLICIES)})")
    if limit is not None and limit < 1:
        raise ConfigError(f"{setting('limit')} must be >= 1, got {limit}")
    if split not in SPLITS:
        raise ConfigError(f"{setting('split')} {split!r} (valid: {', '.join(SPLITS)})")
    records, source = iter_records(path_or_id)
    # each record keeps its index in the file (its default case_id and its name in errors)
    numbered: Iterator[tuple[int, Any]] = (
        (i, record) for i, record in enumerate(records) if split == "all" or record_split(record) == split)
    if shuffle:  # a shuffle needs every record; otherwise reading stops at `limit`
        listed = list(numbered)
        random.Random(seed).shuffle(listed)
        numbered = iter(listed)
    requests: list[EditRequest] = []
    skipped: list[str] = []
    fluency: list[str] = []
    first_seen: dict[str, int] = {}
    total = 0
    while limit is None or len(requests) < limit:  # without `shuffle` nothing past the limit is read
        try:
            index, record = next(numbered)
        except StopIteration:
            break
        total += 1
        rec = _Record(record, source, index)
        try:
            if rec.case_id in first_seen:
                raise rec.fail("case_id", f"repeats record {first_seen[rec.case_id]}'s case_id")
            made = DATASETS.get(name).loader(rec)
            prompts = rec.strings("generation_prompts")
        except DataError as exc:
            if on_bad_record == "fail":
                raise
            skipped.append(str(exc))
            continue
        first_seen[rec.case_id] = index
        requests += made if isinstance(made, list) else [made]
        fluency += list(prompts[:1])
    if limit is not None:
        requests = requests[:limit]
    if not requests:
        raise DataError(f"{source}: no usable records ({len(skipped)} skipped)")
    return LoadedEdits(name=name, source=source, requests=requests, fluency_prompts=fluency[:8], skipped=skipped,
                       total_records=len(listed) if shuffle else total)
