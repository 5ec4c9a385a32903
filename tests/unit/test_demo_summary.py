"""The demo's summary shows each suite's headline number, not a missing accuracy as 0."""

from tuneloop.local.demo import headline_score


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
