"""The report's per-edit drill-down: one row per method and edit, sortable and filterable in the
HTML page (plain JavaScript inside the one offline file)."""
from __future__ import annotations

import html
from pathlib import Path

from editbench.harness.results import EDITS_FILE, read_jsonl
from editbench.harness.record import RunRecord

COLUMNS = ("method", "index", "case_id", "status", "prompt", "target_new", "target_true", "generated_before",
           "generated_after", "prediction_before", "prediction_after", "immediate_reliability_gen",
           "immediate_reliability", "reliability_gen", "reliability", "generalization_gen", "generalization",
           "locality_gen", "locality", "portability_gen", "portability", "retrieved")
RETAINED = ("reliability_gen", "reliability", "generalization_gen", "generalization", "locality_gen", "locality",
            "portability_gen", "portability")
NUMERIC = {"index", "immediate_reliability_gen", "immediate_reliability", *RETAINED}


def edit_rows(result: RunRecord, results_path: Path) -> list[dict]:
    """Each edit of a run: what edits.jsonl says about it (asked, predicted, immediate scores) joined
    with its retention scores at the final checkpoint."""
    path = Path(results_path).parent / EDITS_FILE
    rows = [record for _, record in read_jsonl(path)] if path.is_file() else []
    final = {e["case_id"]: e for e in (result["checkpoints"][-1].get("per_edit") or [])} if result["checkpoints"] \
        else {}
    label = result["method"] + (f" (order {result['order']})" if result.get("order") else "")
    out = []
    for row in rows:
        kept = final.get(row.get("case_id"), {})
        out.append({"method": label, **{k: row.get(k) for k in COLUMNS if k not in ("method",) and k in row},
                    **{k: kept.get(k) for k in RETAINED}})
    return out


def retrieved_text(shown: dict) -> str:
    """A context editor's facts per question of an edit (edits.jsonl `retrieved`), readable in one cell:
    'reliability: f1 | f2 · generalization 1: f3 · locality 1: f4'."""
    parts = []
    for kind, facts in shown.items():
        per_question = [facts] if kind == "reliability" else facts or []
        for k, chosen in enumerate(per_question, 1):
            name = kind if kind == "reliability" else f"{kind} {k}"
            parts.append(f"{name}: " + " | ".join(chosen or ["(none)"]))
    return " · ".join(parts)


def _cell(key: str, value) -> str:
    if value is None:
        return '<td data-v=""></td>'
    if key == "retrieved" and isinstance(value, dict):
        value = retrieved_text(value)
    if key in NUMERIC and isinstance(value, (int, float)):
        text = str(value) if key == "index" else f"{value:.3f}"
        return f'<td data-v="{value}">{text}</td>'
    return f'<td data-v="{html.escape(str(value))}">{html.escape(str(value))}</td>'


def html_section(rows: list[dict]) -> str:
    """The drill-down table with a text filter, method and status filters and click-to-sort headers."""
    methods = sorted({r["method"] for r in rows})
    statuses = sorted({str(r.get("status")) for r in rows})
    options = lambda values: "".join(f'<option>{html.escape(v)}</option>' for v in values)  # noqa: E731
    head = "".join(f'<th data-k="{k}" data-num="{int(k in NUMERIC)}">{html.escape(k)}</th>' for k in COLUMNS)
    body = "".join("<tr>" + "".join(_cell(k, r.get(k)) for k in COLUMNS) + "</tr>" for r in rows)
    return (
        '<section class="drill" id="edits"><h2>Every edit</h2><p>One row per method and edit: the prompt and targets, what the '
        "model said after the prompt (generated, raw text up to the stop) and its top-1 tokens at the target's "
        "positions (teacher forced), before and after the edit, the edit's reliability right "
        "after its batch, and its retention scores at the final checkpoint; for a retrieval editor, the facts "
        "put before each of the edit's questions right after its batch. Click a header to sort; "
        '<a href="#edits" onclick="setTimeout(function(){location.reload()},0)">this table alone</a>.</p>'
        '<div class="filters"><input id="edit-filter" placeholder="filter: any text">'
        f'<select id="method-filter"><option value="">all methods</option>{options(methods)}</select>'
        f'<select id="status-filter"><option value="">any status</option>{options(statuses)}</select>'
        '<span id="edit-count"></span></div>'
        f'<table id="edit-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        f"<script>{_SCRIPT}</script></section>"
    )


_SCRIPT = """
(function(){
 if(location.hash==='#edits'){  // the drill-down alone: a page to filter, sort and screenshot
  for(const el of [...document.body.children]) if(!el.classList.contains('drill')) el.style.display='none';
 }
 const table=document.getElementById('edit-table'), body=table.tBodies[0];
 const text=document.getElementById('edit-filter'), method=document.getElementById('method-filter'),
       status=document.getElementById('status-filter'), count=document.getElementById('edit-count');
 const col=k=>[...table.tHead.rows[0].cells].findIndex(c=>c.dataset.k===k);
 function apply(){
  const t=text.value.toLowerCase(), m=method.value, s=status.value; let shown=0;
  for(const r of body.rows){
   const ok=(!t||r.textContent.toLowerCase().includes(t))&&(!m||r.cells[col('method')].dataset.v===m)
            &&(!s||r.cells[col('status')].dataset.v===s);
   r.style.display=ok?'':'none'; shown+=ok;
  }
  count.textContent=shown+' of '+body.rows.length+' edits';
 }
 for(const th of table.tHead.rows[0].cells){
  th.addEventListener('click',()=>{
   const i=th.cellIndex, num=th.dataset.num==='1', dir=th.dataset.dir==='asc'?-1:1;
   th.dataset.dir=dir===1?'asc':'desc';
   const key=r=>{const v=r.cells[i].dataset.v; return num?(v===''?-Infinity:parseFloat(v)):v;};
   [...body.rows].sort((a,b)=>{const x=key(a),y=key(b); return (x>y?1:x<y?-1:0)*dir;})
     .forEach(r=>body.appendChild(r));
  });
 }
 [text,method,status].forEach(e=>e.addEventListener('input',apply)); apply();
})();
"""
