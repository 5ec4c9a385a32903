"""Benchmark evaluation: MMLU (lm-evaluation-harness conventions) and custom JSONL suites.

Modules: ``benchmarks`` (item types, content versions), ``custom`` (JSONL validation),
``mmlu`` (the packaged MMLU test set and its stratified subset), ``harness``
(lm-evaluation-harness task YAMLs over local data), ``perplexity`` (the held-out perplexity
suite), ``scorers`` (generative scorers), ``lm`` (batched log-likelihoods and greedy
generation; needs torch), ``runner`` (scores a model, builds ``evaluation.json``) and
``job`` (the SageMaker container contract).
"""
