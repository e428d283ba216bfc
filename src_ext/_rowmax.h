/* Margins of a block of rows, and the true-class probability of validated rows of
 * probabilities: for each row, the max over every column except
 * the true one, minus the true column's score.
 *
 * Each row is read as 16-byte vectors (GCC/Clang vector extensions: SSE2 on
 * x86-64, NEON on arm64, plain scalar code elsewhere): the true column is
 * masked to -inf inside the vector, so one pass gives the max over the others
 * whether or not the true class holds the row's maximum. The last vector of a
 * row overlaps the previous one when C is not a multiple of the lane count;
 * a max does not mind seeing a value twice. Measured 1.7x faster than the
 * scalar loop on (1e7, 10) float32.
 *
 * hnm_margin_block_{f32,f64}(S, C, n_rows, cols, out): rows S[i*C : (i+1)*C],
 * true column cols[i] (< 0: unknown label, out[i] = 0, row skipped); writes
 * out[i] = max_{j != cols[i]} S[i, j] - S[i, cols[i]]. Returns nonzero if any
 * scored row holds NaN or +-inf (those rows' outputs are then meaningless and
 * the caller rescans the block to count them). */
#ifndef HNM_ROWMAX_H
#define HNM_ROWMAX_H

/* OpenMP's dynamic adjustment (omp_set_dynamic) around one kernel call, on the
 * calling thread only: GNU libgomp then gives a region fewer threads than asked
 * when the load average says the cores are taken. On a busy machine a team
 * thread that waits for a core holds up every region's join (and spins in
 * it): measured 2.3x slower than one thread for topk of 5e7 float32 at load 14
 * on 2 cores. A user's OMP_DYNAMIC is left alone. Returns the setting to
 * restore with hnm_dynamic_end. */
#ifdef _OPENMP
#include <omp.h>
#include <stdlib.h>
static inline int hnm_dynamic_begin(void) {
    int before = omp_get_dynamic();
    if (getenv("OMP_DYNAMIC") == NULL) omp_set_dynamic(1);
    return before;
}
static inline void hnm_dynamic_end(int before) { omp_set_dynamic(before); }
#else
static inline int hnm_dynamic_begin(void) { return 0; }
static inline void hnm_dynamic_end(int before) { (void) before; }
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <Python.h>

#define HNM_SCALAR_MARGIN(T, NAME)                                               \
static inline int NAME(const T *S, Py_ssize_t C, Py_ssize_t n_rows,             \
                       const Py_ssize_t *cols, T *out) {                        \
    int bad = 0;                                                                \
    for (Py_ssize_t i = 0; i < n_rows; i++) {                                  \
        const T *r = S + i * C;                                                 \
        Py_ssize_t c = cols[i];                                                 \
        T best = -INFINITY, z = 0;                                              \
        if (c < 0) { out[i] = 0; continue; }                                   \
        for (Py_ssize_t j = 0; j < C; j++) {                                   \
            T x = r[j];                                                         \
            z += x - x;                                                         \
            if (j != c && x > best) best = x;                                   \
        }                                                                       \
        bad |= z != 0;                                                          \
        out[i] = best - r[c];                                                   \
    }                                                                           \
    return bad;                                                                 \
}

HNM_SCALAR_MARGIN(float, hnm_margin_scalar_f32)
HNM_SCALAR_MARGIN(double, hnm_margin_scalar_f64)

/* Rows of probabilities: out[i] = S[i, cols[i]] (rows with cols[i] < 0 get 0).
 * Returns nonzero if any scored row holds a value outside [0, 1] (NaN included)
 * or does not sum to 1 within tol; the caller then rescans the block to count. */
#define HNM_SCALAR_PROBA(T, NAME)                                                \
static inline int NAME(const T *S, Py_ssize_t C, Py_ssize_t n_rows,             \
                       const Py_ssize_t *cols, double tol, T *out) {            \
    int bad = 0;                                                                \
    for (Py_ssize_t i = 0; i < n_rows; i++) {                                  \
        const T *r = S + i * C;                                                 \
        double total = 0;                                                       \
        if (cols[i] < 0) { out[i] = 0; continue; }                             \
        for (Py_ssize_t j = 0; j < C; j++) {                                   \
            T x = r[j];                                                         \
            bad |= !(x >= 0 && x <= 1);                                         \
            total += x;                                                         \
        }                                                                       \
        bad |= !(fabs(total - 1.0) <= tol);                                     \
        out[i] = r[cols[i]];                                                    \
    }                                                                           \
    return bad;                                                                 \
}

HNM_SCALAR_PROBA(float, hnm_proba_scalar_f32)
HNM_SCALAR_PROBA(double, hnm_proba_scalar_f64)

#if defined(__GNUC__) || defined(__clang__)

typedef float hnm_v4f __attribute__((vector_size(16)));
typedef int32_t hnm_v4i __attribute__((vector_size(16)));
typedef double hnm_v2d __attribute__((vector_size(16)));
typedef int64_t hnm_v2l __attribute__((vector_size(16)));

/* VT: value vector, MT: same-width integer mask vector, L: lanes, IT: lane int */
#define HNM_VECTOR_MARGIN(T, VT, MT, IT, L, NAME, SCALAR)                        \
static inline int NAME(const T *S, Py_ssize_t C, Py_ssize_t n_rows,             \
                       const Py_ssize_t *cols, T *out) {                        \
    if (C < L || C > INT32_MAX) return SCALAR(S, C, n_rows, cols, out);                          \
    MT lane;                                                                    \
    for (int k = 0; k < L; k++) lane[k] = k;                                    \
    VT ninf, z;                                                                 \
    for (int k = 0; k < L; k++) { ninf[k] = -INFINITY; z[k] = 0; }              \
    for (Py_ssize_t i = 0; i < n_rows; i++) {                                  \
        const T *r = S + i * C;                                                 \
        Py_ssize_t c = cols[i];                                                 \
        if (c < 0) { out[i] = 0; continue; }                                   \
        MT cc = lane * 0 + (IT) c;                                             \
        VT m = ninf, x;                                                         \
        Py_ssize_t j = 0;                                                       \
        for (;;) {                                                              \
            memcpy(&x, r + j, sizeof(x));                                       \
            z += x - x;  /* NaN in a lane unless every value is finite */       \
            MT hit = (lane + (IT) j) == cc;                                     \
            x = (VT) (((MT) x & ~hit) | ((MT) ninf & hit));                     \
            MT gt = x > m;                                                      \
            m = (VT) (((MT) x & gt) | ((MT) m & ~gt));                          \
            if (j + L >= C) break;                                              \
            j += L;                                                             \
            if (j + L > C) j = C - L;  /* overlap the last vector */           \
        }                                                                       \
        T best = m[0];                                                          \
        for (int k = 1; k < L; k++) best = m[k] > best ? m[k] : best;           \
        out[i] = best - r[c];                                                   \
    }                                                                           \
    int bad = 0;                                                                \
    for (int k = 0; k < L; k++) bad |= z[k] != 0;                               \
    return bad;                                                                 \
}

HNM_VECTOR_MARGIN(float, hnm_v4f, hnm_v4i, int32_t, 4, hnm_margin_v16b_f32,
                  hnm_margin_scalar_f32)
HNM_VECTOR_MARGIN(double, hnm_v2d, hnm_v2l, int64_t, 2, hnm_margin_v16b_f64,
                  hnm_margin_scalar_f64)

#define HNM_VECTOR_PROBA(T, VT, MT, IT, L, NAME, SCALAR)                         \
static inline int NAME(const T *S, Py_ssize_t C, Py_ssize_t n_rows,             \
                       const Py_ssize_t *cols, double tol, T *out) {            \
    if (C < L || C > INT32_MAX) return SCALAR(S, C, n_rows, cols, tol, out);    \
    MT lane, ok;                                                                \
    VT zero, one;                                                               \
    for (int k = 0; k < L; k++) { lane[k] = k; ok[k] = -1; zero[k] = 0; one[k] = 1; } \
    int bad = 0;                                                                \
    for (Py_ssize_t i = 0; i < n_rows; i++) {                                  \
        const T *r = S + i * C;                                                 \
        if (cols[i] < 0) { out[i] = 0; continue; }                             \
        VT s = zero, x;                                                         \
        Py_ssize_t j = 0, done = 0;                                             \
        for (;;) {                                                              \
            memcpy(&x, r + j, sizeof(x));                                       \
            ok &= (x >= zero) & (x <= one);  /* false for NaN */                \
            MT fresh = (lane + (IT) j) >= (IT) done;  /* not summed yet */      \
            s += (VT) ((MT) x & fresh);                                         \
            done = j + L;                                                       \
            if (done >= C) break;                                               \
            j = done + L > C ? C - L : done;  /* overlap the last vector */     \
        }                                                                       \
        double total = 0;                                                       \
        for (int k = 0; k < L; k++) total += s[k];                              \
        bad |= !(fabs(total - 1.0) <= tol);                                     \
        out[i] = r[cols[i]];                                                    \
    }                                                                           \
    for (int k = 0; k < L; k++) bad |= ok[k] == 0;                              \
    return bad;                                                                 \
}

HNM_VECTOR_PROBA(float, hnm_v4f, hnm_v4i, int32_t, 4, hnm_proba_v16b_f32,
                 hnm_proba_scalar_f32)
HNM_VECTOR_PROBA(double, hnm_v2d, hnm_v2l, int64_t, 2, hnm_proba_block_f64,
                 hnm_proba_scalar_f64)

#else

#define hnm_margin_v16b_f32 hnm_margin_scalar_f32
#define hnm_margin_v16b_f64 hnm_margin_scalar_f64
#define hnm_proba_v16b_f32 hnm_proba_scalar_f32
#define hnm_proba_block_f64 hnm_proba_scalar_f64

#endif

/* AVX-512 margins (x86-64, chosen at run time where the CPU has AVX-512F/DQ;
 * the file needs no compiler flag). Rows are taken 16 at a time (float64: 8):
 * each row is read in full-width masked loads (no read past the row, so none
 * past the array), its true column set to -inf by a mask, and the per-row
 * maxima of the group are reduced together by a transpose-and-max tree (4
 * levels of lane shuffles for 16 rows instead of 16 horizontal reductions).
 * Non-finite values are flagged by vfpclass on every value of a scored row,
 * the true column included. Measured 3x faster per thread than the 16-byte
 * vectors on (2e6, 10) float32 (bench_scoring.py). */
#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 8)
#define HNM_HAVE_AVX512 1
#include <immintrin.h>
#define HNM_AVX512_TARGET __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))

/* 1 where the AVX-512 kernels may run: set once by hnm_rowmax_init() at import
 * (and by tests, to check the portable path). */
static int hnm_rowmax_avx512 = 0;

static int hnm_rowmax_init(void) {
    __builtin_cpu_init();
    hnm_rowmax_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    return hnm_rowmax_avx512;
}

#define HNM_FPCLASS_NONFINITE 0x99  /* QNaN | +inf | -inf | SNaN */
/* read ahead of the rows being scored (a hint: never faults past the array) */
#ifndef HNM_PREFETCH_FLOATS
#define HNM_PREFETCH_FLOATS 4096
#endif

/* max over the others and the true value of one row, in 16-lane masked loads */
#define HNM_ROW_F32(r, C, c, M, T, BAD) do {                                       \
        __m512 m_ = ninf;                                                          \
        for (Py_ssize_t j_ = 0; j_ < (C); j_ += 16) {                              \
            Py_ssize_t left_ = (C) - j_;                                           \
            __mmask16 lm_ = left_ >= 16 ? (__mmask16) 0xFFFF                       \
                                        : (__mmask16) ((1u << left_) - 1);         \
            __m512 x_ = _mm512_mask_loadu_ps(ninf, lm_, (r) + j_);                 \
            (BAD) |= _mm512_mask_fpclass_ps_mask(lm_, x_, HNM_FPCLASS_NONFINITE);  \
            uint64_t d_ = (uint64_t) ((c) - j_);                                   \
            __mmask16 kt_ = d_ < 16 ? (__mmask16) (1u << d_) : (__mmask16) 0;      \
            m_ = _mm512_max_ps(m_, _mm512_mask_mov_ps(x_, kt_, ninf));             \
        }                                                                          \
        (M) = m_;                                                                  \
        (T) = (r)[c];                                                              \
    } while (0)

HNM_AVX512_TARGET
static int hnm_margin_avx512_f32(const float *S, Py_ssize_t C, Py_ssize_t n_rows,
                                 const Py_ssize_t *cols, float *out) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    /* lane 4L + e of the tree's last level holds row L + 4e */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13,
                                            2, 6, 10, 14, 3, 7, 11, 15);
    __mmask16 bad = 0;
    for (Py_ssize_t i0 = 0; i0 < n_rows; i0 += 16) {
        int m = n_rows - i0 < 16 ? (int) (n_rows - i0) : 16;
        __m512 v[16];
        float t[16];
        __mmask16 known = 0;
        for (int k = 0; k < 16; k++) {
            Py_ssize_t c = k < m ? cols[i0 + k] : -1;
            if (c >= 0) {
                HNM_ROW_F32(S + (i0 + k) * C, C, c, v[k], t[k], bad);
                known |= (__mmask16) (1u << k);
            } else {
                v[k] = ninf;
                t[k] = 0;
            }
        }
        __m512 w[8], x[4], y[2];
        for (int p = 0; p < 8; p++)  /* 256-bit halves: row 2p low, row 2p+1 high */
            w[p] = _mm512_max_ps(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0x44),
                                 _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0xEE));
        for (int q = 0; q < 4; q++)  /* 128-bit lane L: row 4q + L */
            x[q] = _mm512_max_ps(_mm512_shuffle_f32x4(w[2 * q], w[2 * q + 1], 0x88),
                                 _mm512_shuffle_f32x4(w[2 * q], w[2 * q + 1], 0xDD));
        for (int s = 0; s < 2; s++)  /* lane L: rows 8s + L (x2), 8s + 4 + L (x2) */
            y[s] = _mm512_max_ps(_mm512_shuffle_ps(x[2 * s], x[2 * s + 1], 0x44),
                                 _mm512_shuffle_ps(x[2 * s], x[2 * s + 1], 0xEE));
        __m512 z = _mm512_max_ps(_mm512_shuffle_ps(y[0], y[1], 0x88),
                                 _mm512_shuffle_ps(y[0], y[1], 0xDD));
        __m512 best = _mm512_permutexvar_ps(order, z);
        __m512 res = _mm512_maskz_sub_ps(known, best, _mm512_loadu_ps(t));
        _mm512_mask_storeu_ps(out + i0, (__mmask16) ((1u << m) - 1), res);
    }
    return bad != 0;
}

#define HNM_ROW_F64(r, C, c, M, T, BAD) do {                                       \
        __m512d m_ = ninf;                                                         \
        for (Py_ssize_t j_ = 0; j_ < (C); j_ += 8) {                               \
            Py_ssize_t left_ = (C) - j_;                                           \
            __mmask8 lm_ = left_ >= 8 ? (__mmask8) 0xFF : (__mmask8) ((1u << left_) - 1); \
            __m512d x_ = _mm512_mask_loadu_pd(ninf, lm_, (r) + j_);                \
            (BAD) |= _mm512_mask_fpclass_pd_mask(lm_, x_, HNM_FPCLASS_NONFINITE);  \
            uint64_t d_ = (uint64_t) ((c) - j_);                                   \
            __mmask8 kt_ = d_ < 8 ? (__mmask8) (1u << d_) : (__mmask8) 0;          \
            m_ = _mm512_max_pd(m_, _mm512_mask_mov_pd(x_, kt_, ninf));             \
        }                                                                          \
        (M) = m_;                                                                  \
        (T) = (r)[c];                                                              \
    } while (0)

HNM_AVX512_TARGET
static int hnm_margin_avx512_f64(const double *S, Py_ssize_t C, Py_ssize_t n_rows,
                                 const Py_ssize_t *cols, double *out) {
    const __m512d ninf = _mm512_set1_pd(-INFINITY);
    /* lane 2L + e of the tree's last level holds row L + 4e */
    const __m512i order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
    __mmask8 bad = 0;
    for (Py_ssize_t i0 = 0; i0 < n_rows; i0 += 8) {
        int m = n_rows - i0 < 8 ? (int) (n_rows - i0) : 8;
        __m512d v[8];
        double t[8];
        __mmask8 known = 0;
        for (int k = 0; k < 8; k++) {
            Py_ssize_t c = k < m ? cols[i0 + k] : -1;
            if (c >= 0) {
                HNM_ROW_F64(S + (i0 + k) * C, C, c, v[k], t[k], bad);
                known |= (__mmask8) (1u << k);
            } else {
                v[k] = ninf;
                t[k] = 0;
            }
        }
        __m512d w[4], x[2];
        for (int p = 0; p < 4; p++)  /* 256-bit halves: row 2p low, row 2p+1 high */
            w[p] = _mm512_max_pd(_mm512_shuffle_f64x2(v[2 * p], v[2 * p + 1], 0x44),
                                 _mm512_shuffle_f64x2(v[2 * p], v[2 * p + 1], 0xEE));
        for (int q = 0; q < 2; q++)  /* 128-bit lane L: row 4q + L */
            x[q] = _mm512_max_pd(_mm512_shuffle_f64x2(w[2 * q], w[2 * q + 1], 0x88),
                                 _mm512_shuffle_f64x2(w[2 * q], w[2 * q + 1], 0xDD));
        /* within each 128-bit lane L: element 0 from x[0] (row L), 1 from x[1] (row 4 + L) */
        __m512d z = _mm512_max_pd(_mm512_shuffle_pd(x[0], x[1], 0x00),
                                  _mm512_shuffle_pd(x[0], x[1], 0xFF));
        __m512d best = _mm512_permutexvar_pd(order, z);
        __m512d res = _mm512_maskz_sub_pd(known, best, _mm512_loadu_pd(t));
        _mm512_mask_storeu_pd(out + i0, (__mmask8) ((1u << m) - 1), res);
    }
    return bad != 0;
}

/* C <= 16 (float32), rows in groups of 16. Margins: one masked load per row
 * whose mask leaves out the true column (read as -inf, no blend), finiteness
 * checked on the group's values in full contiguous vectors, the true values
 * gathered once per group, and the per-row maxima reduced by the tree as the
 * rows come in (few registers live, no spill). Probabilities (log_loss,
 * confidence): the same with the range [0, 1] checked on the contiguous values
 * and the tree adding the rows' values for the sum check. A check that fails
 * anywhere in the group (unknown-label rows included) returns nonzero: the
 * caller rescans the block to count. */
#define HNM_OP(a, b) (proba ? _mm512_add_ps(a, b) : _mm512_max_ps(a, b))

HNM_AVX512_TARGET
static inline __attribute__((always_inline)) __m512 hnm_narrow_pair_f32(
        const float *g, Py_ssize_t C, const Py_ssize_t *c, int k, uint32_t lm, __m512 ninf,
        const int proba) {
    __m512 a, b;
    if (proba) {  /* every value of the row, zeros beyond it */
        a = _mm512_maskz_loadu_ps((__mmask16) lm, g + k * C);
        b = _mm512_maskz_loadu_ps((__mmask16) lm, g + (k + 1) * C);
    } else {      /* the others: the true column and the lanes beyond the row read -inf */
        a = _mm512_mask_loadu_ps(
            ninf, (__mmask16) (c[k] >= 0 ? lm & ~(1u << c[k]) : 0u), g + k * C);
        b = _mm512_mask_loadu_ps(
            ninf, (__mmask16) (c[k + 1] >= 0 ? lm & ~(1u << c[k + 1]) : 0u), g + (k + 1) * C);
    }
    return HNM_OP(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
}

HNM_AVX512_TARGET
static inline __attribute__((always_inline)) int hnm_narrow_f32(
        const float *S, Py_ssize_t C, Py_ssize_t n_rows, const Py_ssize_t *cols, double tol,
        float *out, const int proba) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13,
                                            2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i row_start = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32((int) C));
    const uint32_t lm = (uint32_t) ((1u << C) - 1);
    __mmask16 bad = 0;
    for (Py_ssize_t i0 = 0; i0 < n_rows; i0 += 16) {
        int m = n_rows - i0 < 16 ? (int) (n_rows - i0) : 16;
        const float *g = S + i0 * C;
        Py_ssize_t nv = (Py_ssize_t) m * C, j = 0;
        for (; j < nv; j += 16) {
            __mmask16 part = nv - j >= 16 ? (__mmask16) 0xFFFF
                                          : (__mmask16) ((1u << (nv - j)) - 1);
            _mm_prefetch((const char *) (g + j + HNM_PREFETCH_FLOATS), _MM_HINT_T0);
            __m512 x = _mm512_maskz_loadu_ps(part, g + j);
            if (proba)  /* ordered compares: false for NaN */
                bad |= part & ~(_mm512_cmp_ps_mask(x, zero, _CMP_GE_OQ)
                                & _mm512_cmp_ps_mask(x, one, _CMP_LE_OQ));
            else
                bad |= _mm512_mask_fpclass_ps_mask(part, x, HNM_FPCLASS_NONFINITE);
        }
        Py_ssize_t cc[16];
        const Py_ssize_t *c = cols + i0;
        if (m < 16) {
            for (int k = 0; k < 16; k++) cc[k] = k < m ? cols[i0 + k] : -1;
            c = cc;
        }
        /* the true columns as int32 (unknown: -1), known rows, and their values */
        __m256i c_lo = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *) c));
        __m256i c_hi = _mm512_cvtepi64_epi32(_mm512_loadu_si512((const void *) (c + 8)));
        __m512i cv = _mm512_inserti64x4(_mm512_castsi256_si512(c_lo), c_hi, 1);
        __mmask16 known = _mm512_cmpge_epi32_mask(cv, _mm512_setzero_si512());
        __m512 truth = _mm512_mask_i32gather_ps(zero, known, _mm512_add_epi32(row_start, cv),
                                                g, 4);
        __m512 y[2];
        for (int s = 0; s < 2; s++) {
            __m512 x[2];
            for (int q = 0; q < 2; q++) {
                int k = 8 * s + 4 * q;
                __m512 w0 = hnm_narrow_pair_f32(g, C, c, k, lm, ninf, proba);
                __m512 w1 = hnm_narrow_pair_f32(g, C, c, k + 2, lm, ninf, proba);
                x[q] = HNM_OP(_mm512_shuffle_f32x4(w0, w1, 0x88),
                              _mm512_shuffle_f32x4(w0, w1, 0xDD));
            }
            y[s] = HNM_OP(_mm512_shuffle_ps(x[0], x[1], 0x44),
                          _mm512_shuffle_ps(x[0], x[1], 0xEE));
        }
        __m512 z = _mm512_permutexvar_ps(order, HNM_OP(_mm512_shuffle_ps(y[0], y[1], 0x88),
                                                       _mm512_shuffle_ps(y[0], y[1], 0xDD)));
        __m512 res;
        if (proba) {  /* |row sum - 1| <= tol, in double, for the known rows */
            const __m512d t = _mm512_set1_pd(tol), d1 = _mm512_set1_pd(1.0);
            __m512d lo = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(z)), d1);
            __m512d hi = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(z, 1)), d1);
            __mmask16 ok = (__mmask16) (_mm512_cmp_pd_mask(_mm512_abs_pd(lo), t, _CMP_LE_OQ)
                                        | (_mm512_cmp_pd_mask(_mm512_abs_pd(hi), t,
                                                              _CMP_LE_OQ) << 8));
            bad |= known & ~ok;
            res = _mm512_maskz_mov_ps(known, truth);
        } else {
            res = _mm512_maskz_sub_ps(known, z, truth);
        }
        _mm512_mask_storeu_ps(out + i0, (__mmask16) ((1u << m) - 1), res);
    }
    return bad != 0;
}
#undef HNM_OP

HNM_AVX512_TARGET
static int hnm_margin_narrow_f32(const float *S, Py_ssize_t C, Py_ssize_t n_rows,
                                 const Py_ssize_t *cols, float *out) {
    return hnm_narrow_f32(S, C, n_rows, cols, 0.0, out, 0);
}

HNM_AVX512_TARGET
static int hnm_proba_narrow_f32(const float *S, Py_ssize_t C, Py_ssize_t n_rows,
                                const Py_ssize_t *cols, double tol, float *out) {
    return hnm_narrow_f32(S, C, n_rows, cols, tol, out, 1);
}

static inline int hnm_margin_block_f32(const float *S, Py_ssize_t C, Py_ssize_t n_rows,
                                       const Py_ssize_t *cols, float *out) {
    if (hnm_rowmax_avx512)
        return C <= 16 ? hnm_margin_narrow_f32(S, C, n_rows, cols, out)
                       : hnm_margin_avx512_f32(S, C, n_rows, cols, out);
    return hnm_margin_v16b_f32(S, C, n_rows, cols, out);
}

static inline int hnm_proba_block_f32(const float *S, Py_ssize_t C, Py_ssize_t n_rows,
                                      const Py_ssize_t *cols, double tol, float *out) {
    if (hnm_rowmax_avx512 && C <= 16) return hnm_proba_narrow_f32(S, C, n_rows, cols, tol, out);
    return hnm_proba_v16b_f32(S, C, n_rows, cols, tol, out);
}

static inline int hnm_margin_block_f64(const double *S, Py_ssize_t C, Py_ssize_t n_rows,
                                       const Py_ssize_t *cols, double *out) {
    if (hnm_rowmax_avx512) return hnm_margin_avx512_f64(S, C, n_rows, cols, out);
    return hnm_margin_v16b_f64(S, C, n_rows, cols, out);
}

#else

static int hnm_rowmax_avx512 = 0;
static int hnm_rowmax_init(void) { return 0; }
#define hnm_margin_block_f32 hnm_margin_v16b_f32
#define hnm_margin_block_f64 hnm_margin_v16b_f64
#define hnm_proba_block_f32 hnm_proba_v16b_f32

#endif

/* Streaming top-k screen: the first j in [0, n) whose key (x[j] if largest, else
 * -x[j]) is >= thr, or is NaN (which the caller counts); n if none. Once a heap is
 * full almost no value passes, so this is one vectorised read of the scores. */
#define HNM_FIRST_HIT_PORTABLE(T, NAME)                                           \
static inline Py_ssize_t NAME(const T *x, Py_ssize_t n, T thr, int largest) {    \
    Py_ssize_t i = 0;                                                           \
    T s = largest ? (T) 1 : (T) -1;                                             \
    while (i < n) {                                                             \
        Py_ssize_t end = i + 64 <= n ? i + 64 : n;                              \
        int hit = 0;                                                            \
        for (Py_ssize_t j = i; j < end; j++) hit |= !(s * x[j] < thr);          \
        if (hit)                                                                \
            for (Py_ssize_t j = i; j < end; j++)                                \
                if (!(s * x[j] < thr)) return j;                                \
        i = end;                                                                \
    }                                                                           \
    return n;                                                                   \
}

HNM_FIRST_HIT_PORTABLE(float, hnm_first_hit_portable_f32)
HNM_FIRST_HIT_PORTABLE(double, hnm_first_hit_portable_f64)

#ifdef HNM_HAVE_AVX512
/* 64 bytes x 4 per step; the predicate !(key < thr) as one unordered compare:
 * x !< thr (largest) or x !> -thr (smallest), true for NaN. */
#define HNM_FIRST_HIT_AVX512(T, VT, L, LOAD, SET1, CMP, MASKT, NAME)                \
HNM_AVX512_TARGET                                                                   \
static Py_ssize_t NAME(const T *x, Py_ssize_t n, T thr, int largest) {             \
    const VT t = SET1(largest ? thr : -thr);                                        \
    const int pred = largest ? _CMP_NLT_UQ : _CMP_NGT_UQ;                            \
    Py_ssize_t i = 0;                                                               \
    if (pred == _CMP_NLT_UQ) {                                                      \
        for (; i + 4 * L <= n; i += 4 * L) {                                        \
            _mm_prefetch((const char *) (x + i + 2048 / sizeof(T)), _MM_HINT_T0);   \
            _mm_prefetch((const char *) (x + i + 2048 / sizeof(T) + L), _MM_HINT_T0); \
            MASKT m = CMP(LOAD(x + i), t, _CMP_NLT_UQ)                              \
                    | CMP(LOAD(x + i + L), t, _CMP_NLT_UQ)                          \
                    | CMP(LOAD(x + i + 2 * L), t, _CMP_NLT_UQ)                      \
                    | CMP(LOAD(x + i + 3 * L), t, _CMP_NLT_UQ);                     \
            if (m) break;                                                           \
        }                                                                           \
    } else {                                                                        \
        for (; i + 4 * L <= n; i += 4 * L) {                                        \
            _mm_prefetch((const char *) (x + i + 2048 / sizeof(T)), _MM_HINT_T0);   \
            _mm_prefetch((const char *) (x + i + 2048 / sizeof(T) + L), _MM_HINT_T0); \
            MASKT m = CMP(LOAD(x + i), t, _CMP_NGT_UQ)                              \
                    | CMP(LOAD(x + i + L), t, _CMP_NGT_UQ)                          \
                    | CMP(LOAD(x + i + 2 * L), t, _CMP_NGT_UQ)                      \
                    | CMP(LOAD(x + i + 3 * L), t, _CMP_NGT_UQ);                     \
            if (m) break;                                                           \
        }                                                                           \
    }                                                                               \
    T s = largest ? (T) 1 : (T) -1;                                                 \
    for (; i < n; i++)                                                              \
        if (!(s * x[i] < thr)) return i;                                            \
    return n;                                                                       \
}

#define HNM_LOADU_PS(p) _mm512_loadu_ps(p)
#define HNM_LOADU_PD(p) _mm512_loadu_pd(p)
HNM_FIRST_HIT_AVX512(float, __m512, 16, HNM_LOADU_PS, _mm512_set1_ps, _mm512_cmp_ps_mask,
                     __mmask16, hnm_first_hit_avx512_f32)
HNM_FIRST_HIT_AVX512(double, __m512d, 8, HNM_LOADU_PD, _mm512_set1_pd, _mm512_cmp_pd_mask,
                     __mmask8, hnm_first_hit_avx512_f64)

static inline Py_ssize_t hnm_first_hit_f32(const float *x, Py_ssize_t n, float thr,
                                           int largest) {
    if (hnm_rowmax_avx512) return hnm_first_hit_avx512_f32(x, n, thr, largest);
    return hnm_first_hit_portable_f32(x, n, thr, largest);
}

static inline Py_ssize_t hnm_first_hit_f64(const double *x, Py_ssize_t n, double thr,
                                           int largest) {
    if (hnm_rowmax_avx512) return hnm_first_hit_avx512_f64(x, n, thr, largest);
    return hnm_first_hit_portable_f64(x, n, thr, largest);
}
#else
#define hnm_first_hit_f32 hnm_first_hit_portable_f32
#define hnm_first_hit_f64 hnm_first_hit_portable_f64
#endif

#endif
