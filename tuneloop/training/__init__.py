"""LoRA supervised fine-tuning under the SageMaker training container contract.

``tuneloop.training.job.run(argv)`` is what ``training_containers/train.py`` calls.
"""
