import pytest

from editbench.benchmarks.exams import load_ceval_csv
from editbench.core import DataError


def write(tmp_path, text):
    path = tmp_path / "physics_val.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_ceval_layout(tmp_path):
    path = write(tmp_path, "id,question,A,B,C,D,answer\n0,Q?,a,b,c,d,C\n1,\"Q, two\",a,b,c,d,A\n")
    qs = load_ceval_csv(path)
    assert [q.answer_index for q in qs] == [2, 0] and qs[1].question == "Q, two" and qs[0].subject == "physics_val"


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,question,A,B,C,answer\n0,Q?,a,b,c,A\n", "header lacks column(s) D"),
        ("id,question,A,B,C,D,answer\n0,Q?,a,b,c,d,E\n", "row 2: field 'answer' must be one of A, B, C, D"),
        ("id,question,A,B,C,D,answer\n0,Q?,a,b\n", "row 2: field 'C' is missing"),
    ],
)
def test_malformed_exam_files(tmp_path, text, message):
    with pytest.raises(DataError) as err:
        load_ceval_csv(write(tmp_path, text))
    assert "physics_val.csv" in str(err.value) and message in str(err.value)
