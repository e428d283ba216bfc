# C type names matching numpy dtypes, shared by every kernel.
cimport numpy as cnp

ctypedef cnp.npy_intp intp_t
ctypedef cnp.npy_float32 float32_t
ctypedef cnp.npy_float64 float64_t

ctypedef fused floating:
    float32_t
    float64_t
