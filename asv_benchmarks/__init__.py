"""asv benchmarks for convtranspose (``asv.conf.json`` at the repository root)."""
