"""`lockgate eval`: score model aliases and policies on a test set, through the gateway itself.

    dataset.py   load and check YAML / JSONL cases (nothing is sent if any is wrong)
    schema.py    the small JSON Schema subset of `match: json_schema`
    scoring.py   one answer against its case: correct, partial or incorrect (pure)
    judge.py     `match: judge`: the judge's prompt and its score (pure)
    runner.py    send every case with the official `openai` SDK, bounded concurrency
    target.py    the gateway to talk to: a running one, or one started in-process
    report.py    figures per alias and category; the terminal table (pure)
    svg.py       the charts as inline SVG (pure)
    html.py      the self-contained HTML report (pure)
    progress.py  the progress bar on stderr

The command itself is `gateway/cli/eval.py`; docs/eval.md is the user's reference.
"""
