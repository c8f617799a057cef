"""Evaluation on held-out questions: answer them with any backend (generate.py), score the answers
(metrics.py, judge.py), write eval_results.json and compare_results.json with HTML pages
(evaluate.py, compare.py, report.py)."""
