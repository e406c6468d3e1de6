"""The probe: standardise, PCA, logistic regression (scikit-learn), scored by grouped
cross-validation (never a question in both train and test), saved without pickle.

A saved probe is one safetensors file: the scaler's mean and scale, the PCA mean and basis, the
logistic regression's coefficients and intercept, and in its metadata the layer and token count
it reads, its target, the hidden size and the sha256 of the model's weights (JSON strings).
Loading refuses a probe made for another model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attractor.errors import UserError

MAX_COMPONENTS = 32


def _pipeline(n_features: int, n_rows: int, seed: int):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = max(1, min(MAX_COMPONENTS, n_features, n_rows - 1))
    return make_pipeline(StandardScaler(), PCA(n_components=k, random_state=seed),
                         LogisticRegression(max_iter=2000))


def group_folds(groups: np.ndarray, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Test-row indices of each fold: whole groups (questions), shuffled with ``seed``, spread
    over ``k`` folds (fewer when there are fewer groups)."""
    uniq = np.unique(groups.astype(str))
    rng = np.random.default_rng(seed)
    rng.shuffle(uniq)
    k = max(2, min(k, len(uniq)))
    fold_of = {g: i % k for i, g in enumerate(uniq)}
    f = np.array([fold_of[g] for g in groups.astype(str)])
    return [np.flatnonzero(f == i) for i in range(k)]


def cross_val_scores(x: np.ndarray, y: np.ndarray, groups: np.ndarray, k: int = 5,
                     seed: int = 0) -> np.ndarray:
    """Out-of-fold scores: each fold's probabilities as within-fold quantiles (NaN where a
    training fold had one class only).

    Quantiles, because pooling raw probabilities across folds mixes fold-specific intercepts:
    a fold whose test questions are rich in positives trains on fewer of them and scores them
    lower, which pulls a no-signal probe's AUROC below 0.5 (0.485 on noise; 0.496 with
    quantiles, tests/test_probes.py)."""
    from scipy.stats import rankdata

    out = np.full(len(y), np.nan)
    if not np.ptp(x, axis=0).any():   # constant features (layer 0 at N = 0: one token)
        return out
    for test in group_folds(groups, k, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        if len(np.unique(y[train])) < 2 or len(test) == 0:
            continue
        model = _pipeline(x.shape[1], len(train), seed).fit(x[train], y[train])
        out[test] = rankdata(model.predict_proba(x[test])[:, 1]) / len(test)
    return out


def refit_se(x: np.ndarray, y: np.ndarray, groups: np.ndarray, reps: int = 20, k: int = 5,
             seed: int = 0) -> float:
    """Standard error of a grouped cross-validated AUROC from refitting the whole
    cross-validation on ``reps`` cluster-bootstrap resamples of the questions (a resampled
    question's copies stay in one fold); NaN when fewer than two resamples score. With B
    resamples the standard error is itself known to about 1 / sqrt(2 (B - 1)) of its size."""
    from attractor.metrics.auroc import auroc

    rng = np.random.default_rng(seed)
    names = groups.astype(str)
    uq, codes = np.unique(names, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    rows_of = np.split(order, np.cumsum(np.bincount(codes, minlength=len(uq)))[:-1])
    vals = []
    for b in range(reps):
        pick = rng.choice(len(uq), len(uq))
        rows = np.concatenate([rows_of[i] for i in pick])
        yb = y[rows]
        if yb.all() or not yb.any():
            continue
        s = cross_val_scores(x[rows], yb, names[rows], k, seed + 1 + b)
        ok = ~np.isnan(s)
        a = auroc(s[ok], yb[ok]) if ok.any() else None
        if a is not None:
            vals.append(a)
    return float(np.std(vals, ddof=1)) if len(vals) >= 2 else float("nan")


def normal_interval(estimate: float, se: float, level: float = 0.95) -> tuple[float, float]:
    """``estimate +- z se`` at two-sided ``level``, clipped to [0, 1] (an AUROC lies there)."""
    from scipy.stats import norm

    if not np.isfinite(se):
        return float("nan"), float("nan")
    z = float(norm.ppf(1 - (1 - level) / 2))
    return max(0.0, estimate - z * se), min(1.0, estimate + z * se)


def refit_interval(x: np.ndarray, y: np.ndarray, groups: np.ndarray, estimate: float,
                   reps: int = 20, k: int = 5, seed: int = 0, level: float = 0.95
                   ) -> tuple[float, float]:
    """Normal interval of a cross-validated AUROC with :func:`refit_se`'s standard error.

    Our own because bootstrapping the out-of-fold scores alone leaves out the refitting
    variance, and under-covers on noise (``experiments/probe_noise.py`` measures both)."""
    return normal_interval(estimate, refit_se(x, y, groups, reps, k, seed), level)


def selected_level(level: float, n_candidates: int) -> float:
    """The per-candidate level whose intervals hold simultaneously at ``level`` over
    ``n_candidates`` (Bonferroni), so that the one chosen by its AUROC is covered at ``level``
    whichever it is: the correction for picking the best layer on the scores that report it."""
    return 1 - (1 - level) / max(1, n_candidates)


def permute_by_question(y: np.ndarray, groups: np.ndarray, rng: np.random.Generator
                        ) -> np.ndarray:
    """Labels shuffled at the question level: each question takes another question's block
    of labels (questions with the same number of rows swap, rows keep their order), so the
    within-question correlation a real label has is kept and only its tie to the features is
    broken."""
    names = groups.astype(str)
    out = np.empty_like(y)
    blocks: dict[int, list[np.ndarray]] = {}
    for g in dict.fromkeys(names.tolist()):
        idx = np.flatnonzero(names == g)
        blocks.setdefault(len(idx), []).append(idx)
    for same in blocks.values():
        for dst, src in zip(same, rng.permutation(len(same))):
            out[dst] = y[same[src]]
    return out


@dataclass
class Probe:
    """A fitted probe and what it reads."""

    mean: np.ndarray
    scale: np.ndarray
    pca_mean: np.ndarray
    components: np.ndarray
    coef: np.ndarray
    intercept: float
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, meta: dict[str, Any], seed: int = 0) -> "Probe":
        """Fit on all rows."""
        pipe = _pipeline(x.shape[1], len(y), seed).fit(x, y)
        sc, pca, lr = pipe.steps[0][1], pipe.steps[1][1], pipe.steps[2][1]
        return cls(sc.mean_.astype(np.float32), sc.scale_.astype(np.float32),
                   pca.mean_.astype(np.float32), pca.components_.astype(np.float32),
                   lr.coef_[0].astype(np.float32), float(lr.intercept_[0]), dict(meta))

    def score(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class for rows of hidden states."""
        z = ((np.asarray(x, np.float32) - self.mean) / self.scale - self.pca_mean) \
            @ self.components.T
        return 1.0 / (1.0 + np.exp(-(z @ self.coef + self.intercept)))

    def save(self, path: Path) -> None:
        """Write the probe as safetensors (tensors + JSON metadata), atomically."""
        import torch
        from safetensors.torch import save

        from attractor.store.atomic import atomic_write_bytes

        tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in (
            ("mean", self.mean), ("scale", self.scale), ("pca_mean", self.pca_mean),
            ("components", self.components), ("coef", self.coef),
            ("intercept", np.array([self.intercept], np.float32)))}
        atomic_write_bytes(Path(path), save(tensors, metadata={
            k: json.dumps(v) for k, v in self.meta.items()}))

    @classmethod
    def load(cls, path: str | Path, weights_sha256: str | None = None) -> "Probe":
        """Read a probe; with ``weights_sha256``, refuse one fitted on another model's states."""
        from safetensors import safe_open

        p = Path(path)
        if not p.is_file():
            raise UserError(f"{path}: no such probe file")
        try:
            with safe_open(str(p), framework="numpy") as f:
                t = {k: f.get_tensor(k) for k in f.keys()}
                meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        except Exception as err:
            raise UserError(f"{path}: not a probe file ({str(err).splitlines()[0]})") from None
        need = {"mean", "scale", "pca_mean", "components", "coef", "intercept"}
        if not need <= set(t):
            raise UserError(f"{path}: not a probe file (missing {sorted(need - set(t))})")
        mine = meta.get("weights_sha256")
        if weights_sha256 and mine and mine != weights_sha256:
            raise UserError(f"{path}: the probe was fitted on {meta.get('model')} (weights "
                            f"{mine[:12]}...), not on this model (weights "
                            f"{weights_sha256[:12]}...)")
        return cls(t["mean"], t["scale"], t["pca_mean"], t["components"], t["coef"],
                   float(t["intercept"][0]), meta)
