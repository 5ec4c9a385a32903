"""The drift verdict: univariate PSI and tests per feature, plus the domain classifier.

A feature drifts when its PSI reaches the significant band (0.2) and, for small samples
(under ``SMALL_SAMPLE`` on either side, where PSI is noisy), its significance test agrees
(p < ``ALPHA``). The window drifts when any feature or the domain classifier says so.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from tuneloop.watch.drift_classifier import ClassifierVerdict, domain_classifier
from tuneloop.watch.drift_features import PromptFeatures, prompt_features, vocabulary
from tuneloop.watch.drift_stats import (
    PSI_SIGNIFICANT,
    chi_square_test,
    mann_whitney_u,
    psi_categorical,
    psi_numeric,
)

SMALL_SAMPLE = 1000
ALPHA = 0.01


@dataclass(frozen=True)
class Prompt:
    """A redacted prompt and how many redactions it had."""

    text: str
    redactions: int = 0


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    psi: float
    p_value: float
    drift: bool
    reference: list[float | str]
    current: list[float | str]


@dataclass(frozen=True)
class DriftResult:
    features: list[FeatureDrift]
    classifier: ClassifierVerdict | None
    reference_size: int
    current_size: int
    drift_detected: bool = field(init=False)

    def __post_init__(self) -> None:
        detected = any(f.drift for f in self.features) or bool(
            self.classifier and self.classifier.drift
        )
        object.__setattr__(self, "drift_detected", detected)

    @property
    def summary(self) -> str:
        drifting = [f.name for f in self.features if f.drift]
        if self.classifier and self.classifier.drift:
            drifting.append(f"domain classifier (AUC {self.classifier.auc:.3f})")
        verdict = "drift in " + ", ".join(drifting) if drifting else "no drift"
        return f"{verdict} ({self.current_size} prompts against {self.reference_size})"


def _numeric(name: str, ref: list[float], cur: list[float], small: bool) -> FeatureDrift:
    psi = psi_numeric(ref, cur)
    _, p = mann_whitney_u(ref, cur)
    drift = psi >= PSI_SIGNIFICANT and (p < ALPHA or not small)
    return FeatureDrift(name, psi, p, drift, list(ref), list(cur))


def _categorical(name: str, ref: list[str], cur: list[str], small: bool) -> FeatureDrift:
    psi = psi_categorical(ref, cur)
    _, p = chi_square_test(ref, cur)
    drift = psi >= PSI_SIGNIFICANT and (p < ALPHA or not small)
    return FeatureDrift(name, psi, p, drift, list(ref), list(cur))


def detect_drift(
    reference: Sequence[Prompt],
    current: Sequence[Prompt],
    use_classifier: bool = True,
    seed: int = 0,
) -> DriftResult:
    if len(reference) < 2 or not current:
        raise ValueError(
            f"drift needs prompts on both sides (reference {len(reference)}, "
            f"current {len(current)})"
        )
    # The vocabulary comes from every other reference prompt and the reference's own OOV rate
    # from the rest: measured against a vocabulary built from themselves, reference prompts
    # would look more familiar than any new prompt of the same kind (a false alarm).
    vocab = vocabulary(p.text for p in reference[::2])
    ref: list[PromptFeatures] = [prompt_features(p.text, p.redactions, vocab) for p in reference]
    cur: list[PromptFeatures] = [prompt_features(p.text, p.redactions, vocab) for p in current]
    small = min(len(ref), len(cur)) < SMALL_SAMPLE
    features = [
        _numeric("prompt_tokens", [f.tokens for f in ref], [f.tokens for f in cur], small),
        _categorical("language", [f.language for f in ref], [f.language for f in cur], small),
        _categorical(
            "pii_redacted",
            ["yes" if f.redacted else "no" for f in ref],
            ["yes" if f.redacted else "no" for f in cur],
            small,
        ),
        _numeric("oov_rate", [f.oov_rate for f in ref[1::2]], [f.oov_rate for f in cur], small),
    ]
    classifier = None
    if use_classifier and min(len(reference), len(current)) >= 4:
        # Balanced sides (a reference sample the size of the window) keep the AUC's meaning
        # fixed and the fit cheap.
        sample = random.Random(seed).sample(list(reference), min(len(reference), len(current)))
        classifier = domain_classifier(
            [p.text for p in sample], [p.text for p in current], seed=seed
        )
    return DriftResult(features, classifier, len(reference), len(current))
