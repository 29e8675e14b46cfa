/* The compiled kernels of recloss_lite/core/kernels.py, which checks every argument before calling them: ids lie
   in [0, rows) of their table, float buffers are float32 and contiguous, and shapes agree. Compiled with
   -Wall -Wextra -Werror.

   restrict marks only pointers whose memory no other argument can reach: the table and the read-only inputs
   against the output buffers the Python side allocates (or, for row_adam, checks to be disjoint). The gradient
   rows of pair_scores_backward are not restrict: two occurrences may share a row (a negative equal to the
   positive, or drawn twice). */
#include <math.h>
#include <stdint.h>

/* The rows are scattered through a table of megabytes: ask for those of row b of the batch a few rows early. */
static inline void prefetch_rows(const float *weight, int64_t d, const int64_t *users, const int64_t *items,
                                 const int64_t *negatives, int64_t b, int64_t n_neg) {
    for (int64_t line = 0; line < d; line += 16) {
        __builtin_prefetch(weight + users[b] * d + line);
        __builtin_prefetch(weight + items[b] * d + line);
        for (int64_t k = 0; k < n_neg; k++) __builtin_prefetch(weight + negatives[b * n_neg + k] * d + line);
    }
}

/* Scores of a batch straight from the table (no gathered copies): pos[b] = <w[users[b]], w[items[b]]> and
   neg[b, j] = <w[users[b]], w[negatives[b, j]]>, with w the (n x d) table and N negatives per row. */
void pair_scores(const float *restrict weight, int64_t d, const int64_t *restrict users,
                 const int64_t *restrict items, const int64_t *restrict negatives, int64_t batch, int64_t n_neg,
                 float *restrict pos, float *restrict neg) {
    for (int64_t b = 0; b < batch; b++) {
        if (b + 4 < batch) prefetch_rows(weight, d, users, items, negatives, b + 4, n_neg);
        const float *restrict u = weight + users[b] * d;
        const float *restrict p = weight + items[b] * d;
        float total = 0.0f;
        #pragma omp simd reduction(+:total)
        for (int64_t j = 0; j < d; j++) total += u[j] * p[j];
        pos[b] = total;
        for (int64_t k = 0; k < n_neg; k++) {
            const float *restrict q = weight + negatives[b * n_neg + k] * d;
            total = 0.0f;
            #pragma omp simd reduction(+:total)
            for (int64_t j = 0; j < d; j++) total += u[j] * q[j];
            neg[b * n_neg + k] = total;
        }
    }
}

/* The backward of pair_scores: given dL/dpos (batch) and dL/dneg (batch x N), add each occurrence's gradient to
   grads[slot] (K x d, zeroed by the caller), where slot[...] maps the users, then the items, then the negatives
   of the batch (in that order, batch * (2 + N) entries) to rows of grads. Rows gu, gp, gq may be one row. */
void pair_scores_backward(const float *restrict weight, int64_t d, const int64_t *restrict users,
                          const int64_t *restrict items, const int64_t *restrict negatives, int64_t batch,
                          int64_t n_neg, const float *restrict grad_pos, const float *restrict grad_neg,
                          const int64_t *restrict slot, float *grads) {
    for (int64_t b = 0; b < batch; b++) {
        if (b + 4 < batch) prefetch_rows(weight, d, users, items, negatives, b + 4, n_neg);
        const float *restrict u = weight + users[b] * d;
        const float *restrict p = weight + items[b] * d;
        float *gu = grads + slot[b] * d;
        float *gp = grads + slot[batch + b] * d;
        float g = grad_pos[b];
        for (int64_t j = 0; j < d; j++) { gu[j] += g * p[j]; gp[j] += g * u[j]; }
        for (int64_t k = 0; k < n_neg; k++) {
            const float *restrict q = weight + negatives[b * n_neg + k] * d;
            float *gq = grads + slot[2 * batch + b * n_neg + k] * d;
            g = grad_neg[b * n_neg + k];
            for (int64_t j = 0; j < d; j++) { gu[j] += g * q[j]; gq[j] += g * u[j]; }
        }
    }
}

/* Adam on rows ids[0..k) of weight (n x d) with moments (n x 2 x d, first then second moment of each row);
   grads (k x d) holds one summed gradient per row, and the ids are distinct. With decay (k) not NULL, the L2
   term decay[r] * w is added to row r's gradient first. The caller checks that no two arguments share memory. */
void row_adam(float *restrict weight, float *restrict moments, const int64_t *restrict ids,
              const float *restrict grads, const float *restrict decay, int64_t k, int64_t d, float beta1,
              float beta2, float eps, float step_size) {
    for (int64_t r = 0; r < k; r++) {
        if (r + 4 < k) {  /* as in prefetch_rows: the row, its moments */
            for (int64_t line = 0; line < d; line += 16) {
                __builtin_prefetch(weight + ids[r + 4] * d + line, 1);
                __builtin_prefetch(moments + ids[r + 4] * 2 * d + line, 1);
                __builtin_prefetch(moments + ids[r + 4] * 2 * d + d + line, 1);
            }
        }
        float *restrict w = weight + ids[r] * d;
        float *restrict m = moments + ids[r] * 2 * d;
        float *restrict v = m + d;
        const float *restrict g = grads + r * d;
        float c = decay ? decay[r] : 0.0f;
        for (int64_t j = 0; j < d; j++) {
            float gj = g[j] + c * w[j];
            float first = beta1 * m[j] + (1.0f - beta1) * gj;
            float second = beta2 * v[j] + (1.0f - beta2) * gj * gj;
            m[j] = first;
            v[j] = second;
            w[j] -= step_size * (first / (sqrtf(second) + eps));
        }
    }
}
