"""Capacity planning: will a training run fit the GPUs of an instance type, and which fits.

``estimate.py`` sizes a run per GPU (docs/training.md, "Capacity planning"), ``shapes.py``
holds the model numbers it needs, ``instances.py`` the SageMaker GPU instance types,
``verdict.py`` checks an instance type and recommends one, ``commands.py`` is
``tuneloop plan``. Pure Python: ``cdk synth`` runs the check on every stage.
"""
