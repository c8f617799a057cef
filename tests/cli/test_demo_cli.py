"""What `slm-factory demo` tells the user after its run (the whole demo run is issue 11's next
step: see the issue's notes): the base vs fine-tuned table and the language rule's drops."""

from __future__ import annotations

import json

from slm_factory.cli.demo import _language_note, _show_comparison
from slm_factory.cli.stages import _context
from slm_factory.demo import create_project, language_rejections


def test_the_demo_ends_with_base_and_finetuned_side_by_side_and_names_dropped_korean_pairs(tmp_path, capsys):
    config = create_project(tmp_path / "demo")
    ctx = _context(config)
    ctx.workspace.ensure()
    aggregate = {"base": {"key_facts": 0.05, "rougeL": 0.21, "bleu": 4.0, "overall": 0.1, "n": 20},
                 "finetuned": {"key_facts": 0.8, "rougeL": 0.7, "bleu": 55.0, "overall": 0.72, "n": 20}}
    test = {"wins": 17, "losses": 2, "ties": 1, "verdict": "fine-tuned better than base beyond noise (p<0.001, 20 questions)"}
    ctx.workspace.write_json("compare_results", {"summary": {**aggregate, "test": test}})
    rejected = [{"id": str(i), "stage": "validate", "rule": "language", "pair": {"source_doc": "kr-bill.txt"}}
                for i in range(3)] + [{"id": "x", "stage": "validate", "rule": "duplicate", "pair": {"source_doc": "a.md"}}]
    ctx.workspace.write_json("rejected_validate", rejected)
    assert language_rejections(rejected) == {"kr-bill.txt": 3}
    _show_comparison(ctx, config)
    _language_note(ctx)
    out, err = capsys.readouterr()
    assert "20 questions never trained on" in out
    assert "0.80" in out and "0.05" in out and "fine-tuned won 17, base won 2, 1 ties" in out
    assert f"Talk to the result: slm-factory chat -c {config}" in out.replace("\n", "")
    assert "3 pairs of kr-bill.txt were dropped by the language rule" in err.replace("\n", " ")
