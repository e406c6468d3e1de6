import math
from itertools import combinations

import numpy as np
import pytest

from attractor.metrics.answers import (answer_entropy, auroc, bootstrap_ci, k_values, maj_at_k,
                                       majority, pass_at_k, question_metrics, top1_share)


def test_pass_at_k_equals_brute_force_over_subsets():
    n, c = 8, 3
    flags = [1] * c + [0] * (n - c)
    for k in range(1, n + 1):
        brute = np.mean([any(flags[i] for i in s) for s in combinations(range(n), k)])
        assert pass_at_k(n, c, k) == pytest.approx(brute)


def test_maj_at_k_exact_on_small_cases():
    classes = ["a", "a", "b", None]
    correct = {"a": True, "b": False}
    # k=1: 2 of 4 single samples vote 'a'; the null sample abstains and counts as wrong
    assert maj_at_k(classes, correct, 1) == pytest.approx(0.5)
    # k=2 subsets: aa(1) ab(tie .5) x2, a-null x2 (1), b-null(0) -> (1 + .5 + .5 + 1 + 1 + 0)/6
    assert maj_at_k(classes, correct, 2) == pytest.approx(4 / 6)
    assert maj_at_k(classes, correct, 4) == pytest.approx(1.0)


def test_entropy_top1_and_null_class():
    classes = ["a", "a", None, None]
    assert answer_entropy(classes) == pytest.approx(math.log(2))
    assert top1_share(classes) == 0.5
    assert answer_entropy(["x"] * 5) == 0.0
    assert majority([None, None], {}) == (None, False)
    assert majority(["b", "a", "a", "b"], {"b": True}) == ("b", True)  # tie: first seen


def test_question_metrics_columns_and_values():
    row = question_metrics(["a", "a", "b", None], [True, True, False, False],
                           ["stop", "stop", "length", "stop"], [10, 20, 30, 40])
    assert row["accuracy"] == 0.5 and row["top1_share"] == 0.5
    assert row["answer_entropy_bits"] == pytest.approx(row["answer_entropy_nats"] / math.log(2))
    assert row["n_unique_answers"] == 3 and row["majority_answer"] == "a"
    assert row["majority_correct"] is True and row["truncation_rate"] == 0.25
    assert row["mean_tokens"] == 25.0
    assert [k for k in row if k.startswith("pass@")] == ["pass@1", "pass@2", "pass@4"]
    assert row["pass@1"] == pytest.approx(0.5)
    assert k_values(6) == [1, 2, 4, 6]


def test_bootstrap_interval_and_auroc():
    mean, lo, hi = bootstrap_ci([0.0, 1.0] * 50)
    assert mean == 0.5 and lo < 0.5 < hi and hi - lo < 0.3
    assert auroc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2], [True, True]) is None
