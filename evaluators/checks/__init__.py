"""The evaluators as pure functions: text in, a verdict out. A judge (``evaluators.judges``)
supplies the scores that need language understanding."""
