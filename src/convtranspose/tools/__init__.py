"""The tools around the library: the command line (:mod:`~convtranspose.tools.cli`), the
benchmarks it runs against PyTorch (``bench*``), the check of every backend against the
reference (:mod:`~convtranspose.tools.check`) and the ahead-of-time compile
(:mod:`~convtranspose.tools.precompile`). The library never imports them.
"""
