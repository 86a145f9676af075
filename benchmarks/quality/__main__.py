"""`python -m benchmarks.quality`: the quality benchmark (see the package's docstring)."""

from benchmarks.quality.runner import main

main()
