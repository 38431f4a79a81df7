"""LLM Core Concepts: the code the course's notebooks import.

Modules are named by concept and say which chapter introduces them. Importing ``utils`` runs
nothing and imports nothing heavy; import the module you need, e.g. ``from utils.sampling import softmax``.

- ``utils.sampling``        logits -> next token, NumPy reference (chapter 1)
- ``utils.sampling_torch``  the same in PyTorch, batched (chapter 1; used by the GPT)
- ``utils.toy_lm``          a bigram model small enough to print every step (chapter 1)
- ``utils.device``          ``get_device()`` and ``seed_everything()`` (chapter 1)
- ``utils.plotting``        the course's plot style and shared figures (chapter 1)
- ``utils.explorer``        the sampling explorer widget and its static figure (chapter 1)
- ``utils.checks``          instant feedback for the exercise notebooks
- ``utils.grade``           ``python -m utils.grade NOTEBOOK.ipynb``
- ``utils.notebook_tools``  ``python -m utils.notebook_tools sync|check|execute``
- ``utils.long_tail``       ``ZipfWorld``: the tiny world with Zipf-distributed subjects (chapter 11)
- ``utils.distributed``     data-parallel training under ``torchrun`` (chapter 11's sweeps)
"""

__version__ = "0.2.0"  # the one place the version lives (pyproject.toml and the notebooks read it)
__distribution__ = "llm-core-concepts"  # what the setup cells check, to tell this package from another `utils`
