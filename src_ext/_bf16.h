/* Reduced-precision screening for the exact hard-pair search.
 *
 * Rows are rounded to bfloat16 (round to nearest even) and packed in pairs; a
 * register-blocked AVX-512 BF16 micro-kernel (vdpbf16ps: 32 multiply-adds per
 * instruction, twice the fp32 FMA rate) computes approximate dot products, which
 * the caller screens against each query's heap root lowered by a rigorous bound
 * on |q.c - approx| and rescores exactly where the bound lets a score through.
 *
 * The bound: q.c - q'.c' = q.(c - c') + (q - q').c', so
 *   |q.c - q'.c'| <= |q| |c - c'| + |q - q'| |c'|,
 * plus the fp32 accumulation of vdpbf16ps (2 rounded adds per pair: at most
 * d * 2^-24 * |q'| |c'| after Cauchy-Schwarz) plus denormals flushed to zero
 * (DAZ/FTZ: at most d * 2^-124 * (1 + |q'| + |c'|)). Norms of the residuals are
 * computed in double and rounded up.
 *
 * The kernels are compiled with a target attribute, so this file needs no
 * special compiler flags; callers check hnm_bf16_supported() at run time.
 */
#ifndef HNM_BF16_H
#define HNM_BF16_H

#include <stdint.h>
#include <math.h>
#include <stddef.h>

#if defined(__x86_64__) && defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 11)
#define HNM_HAVE_BF16 1
#include <immintrin.h>
#define HNM_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512bf16")))

static int hnm_bf16_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bf16");
}

/* Sum of the 16 floats of v, squared, added in double to the two accumulators. */
#define HNM_SQ_ACC(ACC0, ACC1, V) do {                                            \
        __m512d lo_ = _mm512_cvtps_pd(_mm512_castps512_ps256(V));                 \
        __m512d hi_ = _mm512_cvtps_pd(_mm512_extractf32x8_ps(V, 1));              \
        ACC0 = _mm512_fmadd_pd(lo_, lo_, ACC0);                                   \
        ACC1 = _mm512_fmadd_pd(hi_, hi_, ACC1);                                   \
    } while (0)

/* Rows x[r * ldx .. + d] (r < n) rounded to bfloat16 (nearest even for
 * finite values) and packed into pairs, row-major: W[r * ldw + p]
 * for p < ceil(d / 2). err[r] = |x - x'|, tnorm[r] = |x'|, rounded up. The
 * residual x - x' is exact in float; squares are summed in double. */
HNM_BF16_TARGET
static void hnm_bf16_pack_rows(const float *x, ptrdiff_t ldx, ptrdiff_t n, ptrdiff_t d,
                               uint32_t *W, ptrdiff_t ldw, double *err, double *tnorm) {
    const __m512i idx = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41,
                                         39, 37, 35, 33, 31, 29, 27, 25, 23, 21, 19, 17,
                                         15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    ptrdiff_t r, j, dp = (d + 1) / 2;
    for (r = 0; r < n; r++) {
        const float *row = x + r * ldx;
        uint32_t *w = W + r * ldw;
        __m512d e0 = _mm512_setzero_pd(), e1 = _mm512_setzero_pd();
        __m512d t0 = _mm512_setzero_pd(), t1 = _mm512_setzero_pd();
        for (j = 0; j < d; j += 32) {
            ptrdiff_t left = d - j;
            __mmask16 ma = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
            __mmask16 mb = left >= 32 ? (__mmask16)0xffff
                         : (left <= 16 ? (__mmask16)0 : (__mmask16)((1u << (left - 16)) - 1u));
            __m512 a = _mm512_maskz_loadu_ps(ma, row + j);
            __m512 b = _mm512_maskz_loadu_ps(mb, row + j + 16);
            __m512i ua = _mm512_castps_si512(a), ub = _mm512_castps_si512(b);
            ua = _mm512_and_si512(_mm512_add_epi32(ua, _mm512_add_epi32(bias,
                     _mm512_and_si512(_mm512_srli_epi32(ua, 16), one))), high);
            ub = _mm512_and_si512(_mm512_add_epi32(ub, _mm512_add_epi32(bias,
                     _mm512_and_si512(_mm512_srli_epi32(ub, 16), one))), high);
            __m512 ra = _mm512_sub_ps(a, _mm512_castsi512_ps(ua));
            __m512 rb = _mm512_sub_ps(b, _mm512_castsi512_ps(ub));
            HNM_SQ_ACC(e0, e1, ra);
            HNM_SQ_ACC(e0, e1, rb);
            HNM_SQ_ACC(t0, t1, _mm512_castsi512_ps(ua));
            HNM_SQ_ACC(t0, t1, _mm512_castsi512_ps(ub));
            /* the high halves, in element order: 32 bfloat16 = 16 pairs */
            __m512i pairs = _mm512_permutex2var_epi16(ua, idx, ub);
            ptrdiff_t np_ = dp - j / 2 < 16 ? dp - j / 2 : 16;
            _mm512_mask_storeu_epi32(w + j / 2, (__mmask16)((1u << np_) - 1u), pairs);
        }
        /* double sums of d terms: relative error far below the 1e-6 margin */
        err[r] = sqrt(_mm512_reduce_add_pd(_mm512_add_pd(e0, e1))) * (1 + 1e-6) + 1e-300;
        tnorm[r] = sqrt(_mm512_reduce_add_pd(_mm512_add_pd(t0, t1))) * (1 + 1e-6);
    }
}

/* Rows c[r * ldc] (r < n) packed for the micro-kernel: Bp[p * stride + j0 + r],
 * through a row-major staging buffer of 16 rows (16 * ldw words, ldw >= dp)
 * transposed with gathers, so that one 64-byte store writes 16 candidates. */
HNM_BF16_TARGET
static void hnm_bf16_pack_block(const float *c, ptrdiff_t ldc, ptrdiff_t n, ptrdiff_t d,
                                uint32_t *Bp, ptrdiff_t stride, ptrdiff_t j0,
                                uint32_t *stage, ptrdiff_t ldw, double *err,
                                double *tnorm) {
    ptrdiff_t p, r, dp = (d + 1) / 2;
    __m512i vidx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6,
                                                       5, 4, 3, 2, 1, 0),
                                      _mm512_set1_epi32((int)ldw));
    __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
    hnm_bf16_pack_rows(c, ldc, n, d, stage, ldw, err, tnorm);
    for (r = n; r < 16; r++)
        for (p = 0; p < dp; p++)
            stage[r * ldw + p] = 0;
    for (p = 0; p < dp; p++) {
        __m512i v = _mm512_i32gather_epi32(vidx, (const void *)(stage + p), 4);
        _mm512_mask_storeu_epi32(Bp + p * stride + j0, m, v);
    }
}

#define HNM_MR 6

/* Approximate dot products of m packed rows A (row stride dp) with n packed
 * candidates Bp (dp rows of `stride` words, stride a multiple of 32), screened
 * in registers: the screened form f (ip: dot; cosine: dot * cs[j]; l2:
 * dot - cs[j]) is compared with the row's threshold thr[i], and
 *   masks[i * ngroups + g] (ngroups = ceil(n / 32)) gets bit b set where
 *   candidate 32 g + b has f >= thr[i] or f is NaN;
 * the 32 dot products of a group are stored in T[i * ldt + 32 g ..] only where
 * its mask is nonzero, so the tile is never written or read in full. */
HNM_BF16_TARGET
static void hnm_bf16_gemm_screen(const uint32_t *A, const uint32_t *Bp, ptrdiff_t stride,
                                 float *T, ptrdiff_t ldt, ptrdiff_t m, ptrdiff_t n,
                                 ptrdiff_t dp, int metric, const float *cs,
                                 const float *thr, uint32_t *masks) {
    ptrdiff_t i0, j0, p, r, ng = (n + 31) / 32;
    for (j0 = 0; j0 < n; j0 += 32) {
        const uint32_t *b = Bp + j0;
        ptrdiff_t w = n - j0, g = j0 / 32;
        __mmask16 m0 = w >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << w) - 1u);
        __mmask16 m1 = w >= 32 ? (__mmask16)0xffff
                     : (w <= 16 ? (__mmask16)0 : (__mmask16)((1u << (w - 16)) - 1u));
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        if (metric != 0) {
            s0 = _mm512_maskz_loadu_ps(m0, cs + j0);
            s1 = _mm512_maskz_loadu_ps(m1, cs + j0 + 16);
        }
#define HNM_SCREEN_STORE(R, C0, C1) do {                                          \
            __m512 f0_ = C0, f1_ = C1;                                            \
            if (metric == 1) { f0_ = _mm512_mul_ps(f0_, s0); f1_ = _mm512_mul_ps(f1_, s1); } \
            else if (metric == 2) { f0_ = _mm512_sub_ps(f0_, s0); f1_ = _mm512_sub_ps(f1_, s1); } \
            __m512 t_ = _mm512_set1_ps(thr[R]);                                   \
            uint32_t k0_ = _mm512_mask_cmp_ps_mask(m0, f0_, t_, _CMP_NLT_UQ);     \
            uint32_t k1_ = _mm512_mask_cmp_ps_mask(m1, f1_, t_, _CMP_NLT_UQ);     \
            uint32_t k_ = k0_ | (k1_ << 16);                                      \
            masks[(R) * ng + g] = k_;                                             \
            if (k_) {                                                             \
                _mm512_mask_storeu_ps(T + (R) * ldt + j0, m0, C0);                \
                _mm512_mask_storeu_ps(T + (R) * ldt + j0 + 16, m1, C1);           \
            }                                                                     \
        } while (0)
        for (i0 = 0; i0 + HNM_MR <= m; i0 += HNM_MR) {
            const uint32_t *a = A + i0 * dp;
            __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
            __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
            __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
            __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
            __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
            __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
            for (p = 0; p < dp; p++) {
                __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * stride);
                __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * stride + 16);
                __m512bh x;
#define HNM_ROW(R, C0, C1)                                                       \
                x = (__m512bh)_mm512_set1_epi32((int)a[(R) * dp + p]);           \
                C0 = _mm512_dpbf16_ps(C0, x, b0);                                \
                C1 = _mm512_dpbf16_ps(C1, x, b1);
                HNM_ROW(0, c00, c01) HNM_ROW(1, c10, c11) HNM_ROW(2, c20, c21)
                HNM_ROW(3, c30, c31) HNM_ROW(4, c40, c41) HNM_ROW(5, c50, c51)
#undef HNM_ROW
            }
            HNM_SCREEN_STORE(i0 + 0, c00, c01); HNM_SCREEN_STORE(i0 + 1, c10, c11);
            HNM_SCREEN_STORE(i0 + 2, c20, c21); HNM_SCREEN_STORE(i0 + 3, c30, c31);
            HNM_SCREEN_STORE(i0 + 4, c40, c41); HNM_SCREEN_STORE(i0 + 5, c50, c51);
        }
        for (r = i0; r < m; r++) {  /* the last m % HNM_MR rows, one at a time */
            const uint32_t *a = A + r * dp;
            __m512 c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps();
            for (p = 0; p < dp; p++) {
                __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[p]);
                c0 = _mm512_dpbf16_ps(c0, x, (__m512bh)_mm512_loadu_si512(b + p * stride));
                c1 = _mm512_dpbf16_ps(c1, x,
                                      (__m512bh)_mm512_loadu_si512(b + p * stride + 16));
            }
            HNM_SCREEN_STORE(r, c0, c1);
        }
#undef HNM_SCREEN_STORE
    }
}
#else
#define HNM_HAVE_BF16 0
static int hnm_bf16_supported(void) { return 0; }
/* never called where hnm_bf16_supported() is 0 */
static void hnm_bf16_gemm_screen(const uint32_t *A, const uint32_t *Bp, ptrdiff_t stride,
                                 float *T, ptrdiff_t ldt, ptrdiff_t m, ptrdiff_t n,
                                 ptrdiff_t dp, int metric, const float *cs,
                                 const float *thr, uint32_t *masks) {
    (void)A; (void)Bp; (void)stride; (void)T; (void)ldt; (void)m; (void)n; (void)dp;
    (void)metric; (void)cs; (void)thr; (void)masks;
}
static void hnm_bf16_pack_rows(const float *x, ptrdiff_t ldx, ptrdiff_t n, ptrdiff_t d,
                               uint32_t *W, ptrdiff_t ldw, double *err, double *tnorm) {
    (void)x; (void)ldx; (void)n; (void)d; (void)W; (void)ldw; (void)err; (void)tnorm;
}
static void hnm_bf16_pack_block(const float *c, ptrdiff_t ldc, ptrdiff_t n, ptrdiff_t d,
                                uint32_t *Bp, ptrdiff_t stride, ptrdiff_t j0,
                                uint32_t *stage, ptrdiff_t ldw, double *err,
                                double *tnorm) {
    (void)c; (void)ldc; (void)n; (void)d; (void)Bp; (void)stride; (void)j0; (void)stage;
    (void)ldw; (void)err; (void)tnorm;
}
#endif

#endif
