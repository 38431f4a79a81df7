"""Text the course can use on any machine, offline (chapter 2).

- ``parallel_text("en" | "zh")``: a short essay on the history of tea, written for this course in
  English and in Chinese with the same content paragraph by paragraph, so that the two languages
  can be compared on the same meaning.
- ``stdlib_docstrings(max_bytes)``: real English prose taken from the docstrings of the Python
  standard library installed with this interpreter. It is large (several MB) and needs no
  download; the exact text depends on the Python version, so use it for benchmarks and for
  training, never for numbers a test compares exactly.
"""

from __future__ import annotations

import ast
import sysconfig
from importlib import resources
from pathlib import Path

__all__ = ["parallel_text", "stdlib_docstrings"]


def parallel_text(language: str) -> list[str]:
    """The tea essay as a list of paragraphs; ``language`` is "en" or "zh". Defined in chapter 2."""
    if language not in ("en", "zh"):
        raise ValueError(f"language must be 'en' or 'zh', got {language!r}")
    text = resources.files("utils").joinpath("data", f"parallel_{language}.txt").read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def stdlib_docstrings(max_bytes: int = 1_000_000) -> str:
    """Docstrings of the standard library's modules, in a fixed (sorted) order, up to ``max_bytes``."""
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for path in sorted(root.rglob("*.py")):
        if any(part in ("test", "tests", "idlelib", "site-packages", "lib2to3") for part in path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    parts.append(doc)
                    size += len(doc.encode("utf-8")) + 2
                    if size >= max_bytes:
                        return "\n\n".join(parts).encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
    return "\n\n".join(parts)
