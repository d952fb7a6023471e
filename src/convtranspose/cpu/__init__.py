"""CPU backends: ``direct`` (the channels-last engine, the gather kernels, and the
register-blocked GEMM for weight gradients) and ``im2col`` (BLAS GEMMs in parallel tasks)."""
