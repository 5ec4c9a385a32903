"""The demo's summary shows each suite's headline number, not a missing accuracy as 0."""

from typing import Any

from tuneloop.local.demo import headline_score, score_table


def test_accuracy_suites_show_accuracy() -> None:
    assert headline_score({"acc": 0.41666, "acc_norm": 0.5}) == "acc 0.417"


def test_perplexity_suites_show_perplexity_not_zero_accuracy() -> None:
    result = {
        "perplexity": 12.3456,
        "nll_per_token": 2.513,
        "lower_is_better": ["perplexity", "nll_per_token"],
        "n_items": 5,
    }
    assert headline_score(result) == "perplexity 12.35"


def test_suites_without_known_metrics_list_their_scores() -> None:
    result = {"exact": 0.25, "exact_stderr": 0.1, "n_items": 4, "items": []}
    assert headline_score(result) == "exact 0.250"
    assert headline_score({"items": []}) == "no score"


def test_score_table_puts_base_and_versions_side_by_side() -> None:
    runs: list[dict[str, Any]] = [
        {
            "version": "v0001",
            "scores": {
                "candidate": {"acme": "acc 0.944", "mmlu": "acc 0.250"},
                "base": {"acme": "acc 0.028", "mmlu": "acc 0.250"},
            },
        },
        {"version": "v0002", "scores": {"candidate": {"acme": "acc 0.750"}}},
        {"version": "v0003", "status": "FAILED"},
    ]
    header, acme, mmlu = score_table(runs)
    assert header.split() == ["suite", "base", "v0001", "v0002"]
    assert acme.split() == ["acme", "acc", "0.028", "acc", "0.944", "acc", "0.750"]
    assert mmlu.split() == ["mmlu", "acc", "0.250", "acc", "0.250", "-"]
    assert score_table([]) == []
    long = [{"version": "v0001-20261203-201405", "scores": {"candidate": {"acme": "acc 0.9"}}}]
    assert score_table(long)[0].split() == ["suite", "v0001-20261203-201405"]
