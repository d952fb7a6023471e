"""CPU backends: ``direct`` (gather kernel) and ``im2col`` (BLAS GEMM + col2im)."""
