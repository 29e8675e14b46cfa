/* The compiled kernels of recloss_lite/core/kernels.py, which checks every argument before calling them: ids lie
   in [0, rows) of their table, float buffers are float32 and contiguous, and shapes agree. The few arrays of ids
   too long to check in a separate pass (the ids of distinct_rows, the order and start of the grouped kernels) are
   checked here, each entry before it is used, and the kernel reports what it found. Compiled with -Wall -Wextra
   -Werror.

   Threads: the kernels that take `threads` split their outer loop over that many OpenMP threads where the library
   is built with -fopenmp (it then shares PyTorch's OpenMP runtime, libgomp, already loaded); otherwise the pragmas
   are ignored and they run on one thread. Every split is over rows whose results do not depend on each other, or
   (grouped_scores_backward) over a fixed number of parts, so the numbers never depend on the thread count.

   restrict marks only pointers whose memory no other argument can reach: the table and the read-only inputs
   against the output buffers the Python side allocates (or, for row_adam, checks to be disjoint). The gradient
   rows of batch_scores_backward are not restrict: two occurrences may share a row (a negative equal to the
   positive, or drawn twice). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define AHEAD 16 /* entries of an index array looked ahead to prefetch what they point to */

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
void batch_scores(const float *restrict weight, int64_t d, const int64_t *restrict users,
                 const int64_t *restrict items, const int64_t *restrict negatives, int64_t batch, int64_t n_neg,
                 float *restrict pos, float *restrict neg, int64_t threads) {
    (void)threads;
    #pragma omp parallel for num_threads(threads) schedule(static)
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

/* The backward of batch_scores: given dL/dpos (batch) and dL/dneg (batch x N), add each occurrence's gradient to
   grads[slot] (n_slots x d, zeroed here: each thread its own rows), where slot[...] maps the users, then the
   items, then the negatives of the batch (in that order, batch * (2 + N) entries) to rows of grads. Rows gu, gp,
   gq may be one row. The threads split the rows of grads, not the batch: each goes through the whole batch and adds
   only to its own rows, so every row sees the same additions in the same order as on one thread. */
void batch_scores_backward(const float *restrict weight, int64_t d, const int64_t *restrict users,
                          const int64_t *restrict items, const int64_t *restrict negatives, int64_t batch,
                          int64_t n_neg, const float *restrict grad_pos, const float *restrict grad_neg,
                          const int64_t *restrict slot, float *grads, int64_t n_slots, int64_t threads) {
    (void)threads;
    #pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int64_t part = 0; part < threads; part++) {
        const int64_t first = n_slots * part / threads, last = n_slots * (part + 1) / threads;
        memset(grads + first * d, 0, (size_t)((last - first) * d) * sizeof(float));
        for (int64_t b = 0; b < batch; b++) {
            if (b + 4 < batch) prefetch_rows(weight, d, users, items, negatives, b + 4, n_neg);
            const float *restrict u = weight + users[b] * d;
            const float *restrict p = weight + items[b] * d;
            const int mine_u = slot[b] >= first && slot[b] < last;
            float *gu = grads + slot[b] * d;
            float *gp = grads + slot[batch + b] * d;
            float g = grad_pos[b];
            /* Two loops per pair, each with one output row, so that they vectorise; an entry sees the same
               additions in the same order as in one loop, even where the two rows are one. */
            if (mine_u)
                for (int64_t j = 0; j < d; j++) gu[j] += g * p[j];
            if (slot[batch + b] >= first && slot[batch + b] < last)
                for (int64_t j = 0; j < d; j++) gp[j] += g * u[j];
            for (int64_t k = 0; k < n_neg; k++) {
                const int64_t row = slot[2 * batch + b * n_neg + k];
                const float *restrict q = weight + negatives[b * n_neg + k] * d;
                float *gq = grads + row * d;
                g = grad_neg[b * n_neg + k];
                if (mine_u)
                    for (int64_t j = 0; j < d; j++) gu[j] += g * q[j];
                if (row >= first && row < last)
                    for (int64_t j = 0; j < d; j++) gq[j] += g * u[j];
            }
        }
    }
}

/* Adam on rows ids[0..k) of weight (n x d) with moments (n x 2 x d, first then second moment of each row);
   grads (k x d) holds one summed gradient per row, and the ids are distinct (the threads update disjoint rows).
   With decay (k) not NULL, the L2 term decay[r] * w is added to row r's gradient first. The caller checks that no
   two arguments share memory. */
void row_adam(float *restrict weight, float *restrict moments, const int64_t *restrict ids,
              const float *restrict grads, const float *restrict decay, int64_t k, int64_t d, float beta1,
              float beta2, float eps, float step_size, int64_t threads) {
    (void)threads;
    #pragma omp parallel for num_threads(threads) schedule(static)
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

/* Adam on every row of the table, as torch.optim.Adam on a dense table whose gradient is zero outside the rows a
   step touched: each row's moments decay and the row moves with them. The touched rows' moments hold their new
   gradient's share divided by beta already (RowAdam._dense_step), so that the decay here completes their update. */
void dense_adam(float *restrict weight, float *restrict moments, int64_t n, int64_t d, float beta1, float beta2,
                float eps, float step_size, int64_t threads) {
    (void)threads;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < n; r++) {
        float *restrict w = weight + r * d;
        float *restrict m = moments + r * 2 * d;
        float *restrict v = m + d;
        #pragma omp simd
        for (int64_t j = 0; j < d; j++) {
            float first = beta1 * m[j], second = beta2 * v[j];
            m[j] = first;
            v[j] = second;
            w[j] -= step_size * (first / (sqrtf(second) + eps));
        }
    }
}

/* The position of the first of ids[0..count) outside [0, n), or -1 where all lie inside: the range check the
   Python side runs on every array of ids before a kernel reads through it (one pass, no allocation). */
int64_t first_outside(const int64_t *restrict ids, int64_t count, int64_t n) {
    for (int64_t i = 0; i < count; i++)
        if ((uint64_t)ids[i] >= (uint64_t)n) return i;
    return -1;
}

/* The distinct ids among ids[0..count) in increasing order: unique[0..k) (k is returned; -1, with nothing but
   marked written, where an id lies outside [0, n)), inverse (count) with ids[i] == unique[inverse[i]], and
   counts[0..k) (the occurrences of each). marked (n bytes) and position (n) are scratch: marked is cleared here,
   and position is read only at rows marked in this call. unique and counts hold at least min(count, n) entries.
   Where start (min(count, n) + 1) is not NULL, the occurrences are also grouped by row: order (count) lists
   those of row s at order[start[s] .. start[s + 1]), in increasing order (the layout of grouped_scores); scratch
   (count) is then used, and count must be below 2^31. The grouping is a two-pass counting sort on `threads`
   threads (see group_rows); the marks and the plain counts take one thread (their writes scatter over shared
   memory). The result is the same for any thread count: each output has one correct value. */
#define BUCKETS 256     /* rows are first sorted into at most this many ranges of consecutive rows */
#define MAX_PARTS 32    /* the ids are split into at most this many parts, each with its own cursors */

/* The grouping of distinct_rows, from inverse: (1) each part of the occurrences (one per thread) counts its
   occurrences per range of 2^shift rows; (2) it writes (row, occurrence) pairs into its own places of each range in
   scratch, in increasing order (parts in order: the ranges hold their occurrences in increasing order); (3) each
   range, on its own, counts its rows (counts), sets their start and writes their occurrences into order. Every
   write of a pass goes to places no other thread writes, and pass 3 writes to at most 2^shift places at a time. */
static void group_rows(const int64_t *restrict inverse, int64_t count, int64_t k, int64_t *restrict counts,
                       int64_t *restrict start, int64_t *restrict order, int64_t *restrict scratch, int64_t threads) {
    int shift = 8;
    while ((k - 1) >> shift >= BUCKETS) shift++;
    const int64_t ranges = ((k - 1) >> shift) + 1;
    const int64_t parts = threads < 1 ? 1 : threads > MAX_PARTS ? MAX_PARTS : threads;
    int64_t cursor[MAX_PARTS][BUCKETS], range_start[BUCKETS + 1];
    memset(cursor, 0, sizeof(cursor));
    #pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int64_t p = 0; p < parts; p++)
        for (int64_t i = count * p / parts; i < count * (p + 1) / parts; i++) cursor[p][inverse[i] >> shift]++;
    int64_t total = 0;
    for (int64_t r = 0; r < ranges; r++) {  /* range by range, part by part */
        range_start[r] = total;
        for (int64_t p = 0; p < parts; p++) {
            const int64_t here = cursor[p][r];
            cursor[p][r] = total;
            total += here;
        }
    }
    range_start[ranges] = total;
    #pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int64_t p = 0; p < parts; p++)
        for (int64_t i = count * p / parts; i < count * (p + 1) / parts; i++)
            scratch[cursor[p][inverse[i] >> shift]++] = inverse[i] << 32 | i;
    #pragma omp parallel for num_threads(parts) schedule(dynamic, 1)
    for (int64_t r = 0; r < ranges; r++) {
        const int64_t first = r << shift, last = (r + 1) << shift < k ? (r + 1) << shift : k;
        memset(counts + first, 0, (size_t)(last - first) * sizeof(int64_t));
        for (int64_t i = range_start[r]; i < range_start[r + 1]; i++) counts[scratch[i] >> 32]++;
        int64_t at = range_start[r];
        for (int64_t s = first; s < last; s++) {
            start[s] = at;
            at += counts[s];
        }
        for (int64_t i = range_start[r]; i < range_start[r + 1]; i++)
            order[start[scratch[i] >> 32]++] = scratch[i] & 0xffffffff;  /* start[s] ends at start[s + 1] */
        for (int64_t s = first; s < last; s++) start[s] -= counts[s];
    }
    start[k] = count;
}

int64_t distinct_rows(const int64_t *restrict ids, int64_t count, int64_t n, uint8_t *restrict marked,
                      int64_t *restrict position, int64_t *restrict unique, int64_t *restrict inverse,
                      int64_t *restrict counts, int64_t *restrict start, int64_t *restrict order,
                      int64_t *restrict scratch, int64_t threads) {
    memset(marked, 0, (size_t)n);
    for (int64_t i = 0; i < count; i++) {
        if ((uint64_t)ids[i] >= (uint64_t)n) return -1;
        marked[ids[i]] = 1;
    }
    int64_t k = 0, r = 0;
    for (; r + 8 <= n; r += 8) {  /* eight marks (bytes 0 or 1) at a time, in increasing order */
        uint64_t word;
        memcpy(&word, marked + r, 8);
        for (; word; word &= word - 1) {
            int64_t j = r + (__builtin_ctzll(word) >> 3);
            position[j] = k;
            unique[k++] = j;
        }
    }
    for (; r < n; r++)
        if (marked[r]) { position[r] = k; unique[k++] = r; }
    if (start) {
        #pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t i = 0; i < count; i++) inverse[i] = position[ids[i]];
        if (k > 0) group_rows(inverse, count, k, counts, start, order, scratch, threads);
        else start[0] = 0;
        return k;
    }
    memset(counts, 0, (size_t)k * sizeof(int64_t));
    for (int64_t i = 0; i < count; i++) {
        int64_t slot = position[ids[i]];
        inverse[i] = slot;
        counts[slot]++;
    }
    return k;
}

/* Top-k of rows of scores, exactly as torch.topk(largest=True, sorted=True) on the CPU computes them where
   k * 64 <= n: std::partial_sort of (value, index) pairs with "x > y, NaN first" (libstdc++'s heap select, then
   heap sort), reproduced step by step so that tied scores come out in the same order. The heap lives in
   values/indices (k entries per row). */
static inline int greater(float x, float y) { return (isnan(x) && !isnan(y)) || x > y; }

static void adjust_heap(float *values, int64_t *indices, int64_t hole, int64_t len, float value, int64_t index) {
    const int64_t top = hole;
    int64_t child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (greater(values[child], values[child - 1])) child--;
        values[hole] = values[child];
        indices[hole] = indices[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        values[hole] = values[child - 1];
        indices[hole] = indices[child - 1];
        hole = child - 1;
    }
    int64_t parent = (hole - 1) / 2;  /* push_heap */
    while (hole > top && greater(values[parent], value)) {
        values[hole] = values[parent];
        indices[hole] = indices[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    values[hole] = value;
    indices[hole] = index;
}

/* Whether row (n scores) is finite, and its top k into v, x, with the sorted items excluded[e .. e_end) at -inf. */
static int topk_row(const float *restrict row, int64_t n, int64_t k, const int64_t *restrict excluded, int64_t e,
                    int64_t e_end, float *restrict v, int64_t *restrict x) {
    float check = 0.0f;  /* x * 0 is 0 for finite x, NaN for NaN and +-inf: the sum tells a non-finite row */
    for (int64_t j = 0; j < k; j++) {
        while (e < e_end && excluded[e] < j) e++;
        v[j] = (e < e_end && excluded[e] == j) ? -INFINITY : row[j];
        x[j] = j;
        check += row[j] * 0.0f;
    }
    for (int64_t parent = (k - 2) / 2; k >= 2; parent--) {  /* make_heap */
        adjust_heap(v, x, parent, k, v[parent], x[parent]);
        if (parent == 0) break;
    }
    int64_t j = k;  /* heap select: a value enters where it beats the heap's top (the k-th best so far) */
    while (j < n) {
        while (e < e_end && excluded[e] < j) e++;
        int64_t stop = e < e_end ? excluded[e] : n;  /* scan up to the next excluded item */
        for (; j + 32 <= stop; j += 32) {  /* most blocks of 32 hold no score above the top: one test each */
            float best = -INFINITY;
            #pragma omp simd reduction(max:best) reduction(+:check)
            for (int64_t t = 0; t < 32; t++) {
                best = best > row[j + t] ? best : row[j + t];
                check += row[j + t] * 0.0f;
            }
            if (best > v[0])
                for (int64_t t = j; t < j + 32; t++)
                    if (row[t] > v[0]) adjust_heap(v, x, 0, k, row[t], t);
        }
        for (; j < stop; j++) {
            check += row[j] * 0.0f;
            if (row[j] > v[0]) adjust_heap(v, x, 0, k, row[j], j);
        }
        if (stop < n) check += row[stop] * 0.0f;  /* an excluded item is -inf: it never beats the top */
        j = stop + 1;
    }
    for (int64_t last = k - 1; last > 0; last--) {  /* sort_heap: pop the top to the end */
        float value = v[last];
        int64_t index = x[last];
        v[last] = v[0];
        x[last] = x[0];
        adjust_heap(v, x, 0, last, value, index);
    }
    return check == 0.0f;
}

/* For each of the rows (n scores each, C order): the k best (values, indices, k per row), where the items
   excluded[exclude_ptr[r] .. exclude_ptr[r + 1]) of row r (each in [0, n), sorted) count as -inf, as if masked.
   The scores are only read. Returns 0, or r + 1 for the first row r holding NaN or +-inf (the caller raises). */
int64_t topk_rows(const float *restrict scores, int64_t rows, int64_t n, int64_t k,
                  const int64_t *restrict exclude_ptr, const int64_t *restrict excluded, float *restrict values,
                  int64_t *restrict indices, int64_t threads) {
    int64_t first_bad = rows;
    (void)threads;
    #pragma omp parallel for num_threads(threads) schedule(static) reduction(min:first_bad)
    for (int64_t r = 0; r < rows; r++)
        if (!topk_row(scores + r * n, n, k, excluded, exclude_ptr[r], exclude_ptr[r + 1], values + r * k,
                      indices + r * k) && r < first_bad)
            first_bad = r;
    return first_bad < rows ? first_bad + 1 : 0;
}

/* The grouped layout of a batch with many negatives per row. Its B rows have a user, a positive and N negatives
   each: M = B * (2 + N) occurrences, numbered [users (B) | positives (B) | negatives (B x N)] and each a row of a
   (k x d) table of the batch's distinct rows. users[b] is the table row of b's user, and order[start[s] ..
   start[s + 1]) lists the occurrences of row s in increasing order (as distinct_rows groups them). Working row
   by row of the table reads each row once, in order, while the B user rows stay in the cache; the scores and the
   user gradients are then written in the order of the rows. order and start are checked as they are read: an
   occurrence outside [0, M) or a range outside order is skipped and counted, and the count (0 where all is well)
   is returned; the caller then raises. */
static inline int64_t row_of(int64_t negative, int64_t n_neg, double inverse_n_neg) {
    int64_t b = (int64_t)((double)negative * inverse_n_neg);  /* negative / n_neg without a division */
    if (b * n_neg > negative) b--;
    else if ((b + 1) * n_neg <= negative) b++;
    return b;
}

static inline int bad_range(const int64_t *start, int64_t s, uint64_t occurrences) {
    return start[s] < 0 || start[s] > start[s + 1] || (uint64_t)start[s + 1] > occurrences;
}

/* The batch row b of the item occurrence order[i] (a positive or a negative); -1 for a user's occurrence (the
   caller skips it) and -2 for one outside [0, M) (the caller counts it). First prefetches what the occurrence AHEAD
   places on will touch: its user's row of `table` (rows of d, by users[b]) and, where `block` is not NULL, its row b
   of `block` (B x d). */
static inline int64_t item_row(const int64_t *restrict order, int64_t i, int64_t end, int64_t batch, int64_t n_neg,
                               double inverse_n_neg, uint64_t occurrences, const float *table, const int64_t *users,
                               const float *block, int64_t d) {
    if (i + AHEAD < end) {
        int64_t ahead = order[i + AHEAD];
        if ((uint64_t)ahead < occurrences && ahead >= batch) {
            int64_t b = ahead < 2 * batch ? ahead - batch : row_of(ahead - 2 * batch, n_neg, inverse_n_neg);
            for (int64_t line = 0; line < d; line += 16) {
                __builtin_prefetch(table + users[b] * d + line);
                if (block) __builtin_prefetch(block + b * d + line, 1);
            }
        }
    }
    int64_t o = order[i];
    if ((uint64_t)o >= occurrences) return -2;
    if (o < batch) return -1;  /* a user: scored with its rows' items */
    return o < 2 * batch ? o - batch : row_of(o - 2 * batch, n_neg, inverse_n_neg);
}

/* Between the grouped order and the batch's: sorted[i] (M = B * (2 + N)) is the entry of occurrence order[i] in
   pos (B, for the positives, occurrences B .. 2B - 1) or neg (B x N, the negatives, from 2B); the users'
   occurrences and ids outside [0, M) have none (skipped; the grouped kernels count the latter). `to_batch` copies
   sorted into pos and neg, else pos and neg into sorted. A pass of its own, with no other work in the loop, so that
   the processor overlaps its scattered accesses to the (B x N) matrix (megabytes): inside the grouped loops each
   stalled them. */
static void reorder(const int64_t *restrict order, int64_t batch, int64_t n_neg, float *restrict sorted,
                    float *restrict pos, float *restrict neg, int to_batch, int64_t threads) {
    const int64_t occurrences = batch * (2 + n_neg);
    (void)threads;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < occurrences; i++) {
        const int64_t o = order[i];
        if (o < batch || o >= occurrences) continue;
        float *entry = o < 2 * batch ? pos + (o - batch) : neg + (o - 2 * batch);
        if (to_batch) *entry = sorted[i];
        else sorted[i] = *entry;
    }
}

int64_t grouped_scores(const float *restrict table, int64_t d, const int64_t *restrict users,
                       const int64_t *restrict order, const int64_t *restrict start, int64_t k, int64_t batch,
                       int64_t n_neg, float *restrict pos, float *restrict neg, float *restrict sorted,
                       int64_t threads) {
    const double inverse_n_neg = 1.0 / (double)n_neg;
    const uint64_t occurrences = (uint64_t)(batch * (2 + n_neg));
    int64_t bad = 0;
    (void)threads;
    #pragma omp parallel for num_threads(threads) schedule(dynamic, 256) reduction(+:bad)
    for (int64_t s = 0; s < k; s++) {
        if (bad_range(start, s, occurrences)) { bad++; continue; }
        const float *restrict q = table + s * d;
        for (int64_t i = start[s]; i < start[s + 1]; i++) {
            int64_t b = item_row(order, i, start[s + 1], batch, n_neg, inverse_n_neg, occurrences, table, users,
                                 NULL, d);
            if (b < 0) { bad += b == -2; continue; }
            const float *restrict u = table + users[b] * d;
            float total = 0.0f;
            #pragma omp simd reduction(+:total)
            for (int64_t j = 0; j < d; j++) total += u[j] * q[j];
            sorted[i] = total;
        }
    }
    if (!bad) reorder(order, batch, n_neg, sorted, pos, neg, 1, threads);
    return bad;
}

/* The backward of grouped_scores: grads (k x d) = the gradient of each table row. The rows are split into `parts`
   ranges (parts ranges, whatever the threads); part p sums each of its rows' item terms in the order of their
   occurrences, and the user terms of its items into its own block p of user_grads (parts x B x d); the blocks
   are then added to the users' rows b by b, part by part. grads and user_grads are written here (no zeroing);
   sorted (M) is scratch: the gradients in the grouped order (reorder). */
int64_t grouped_scores_backward(const float *restrict table, int64_t d, const int64_t *restrict users,
                                const int64_t *restrict order, const int64_t *restrict start, int64_t k,
                                int64_t batch, int64_t n_neg, const float *restrict grad_pos,
                                const float *restrict grad_neg, float *restrict grads, float *restrict user_grads,
                                float *restrict sorted, int64_t parts, int64_t threads) {
    const double inverse_n_neg = 1.0 / (double)n_neg;
    const uint64_t occurrences = (uint64_t)(batch * (2 + n_neg));
    int64_t bad = 0;
    (void)threads;
    reorder(order, batch, n_neg, sorted, (float *)grad_pos, (float *)grad_neg, 0, threads);  /* reads them only */
    #pragma omp parallel for num_threads(threads) schedule(dynamic, 1) reduction(+:bad)
    for (int64_t part = 0; part < parts; part++) {
        const int64_t first = k * part / parts, last = k * (part + 1) / parts;
        float *restrict block = user_grads + part * batch * d;
        memset(block, 0, (size_t)(batch * d) * sizeof(float));
        memset(grads + first * d, 0, (size_t)((last - first) * d) * sizeof(float));
        for (int64_t s = first; s < last; s++) {
            if (bad_range(start, s, occurrences)) { bad++; continue; }
            const float *restrict q = table + s * d;
            float *restrict gq = grads + s * d;
            for (int64_t i = start[s]; i < start[s + 1]; i++) {
                int64_t b = item_row(order, i, start[s + 1], batch, n_neg, inverse_n_neg, occurrences, table, users,
                                     block, d);
                if (b < 0) { bad += b == -2; continue; }
                const float g = sorted[i];
                const float *restrict u = table + users[b] * d;
                float *restrict gu = block + b * d;
                for (int64_t j = 0; j < d; j++) gq[j] += g * u[j];
                for (int64_t j = 0; j < d; j++) gu[j] += g * q[j];
            }
        }
    }
    for (int64_t b = 0; b < batch; b++)
        for (int64_t part = 0; part < parts; part++)
            for (int64_t j = 0; j < d; j++) grads[users[b] * d + j] += user_grads[(part * batch + b) * d + j];
    return bad;
}

/* Rows ids[0..k) of x (each in [0, rows of x)), or its first k rows where ids is NULL, scaled to unit length as
   torch.nn.functional.normalize does: y = x / max(|x|, 1e-12) (k x d); norms (k) keeps max(|x|, 1e-12). */
void normalize_rows(const float *restrict x, const int64_t *restrict ids, int64_t k, int64_t d, float *restrict y,
                    float *restrict norms, int64_t threads) {
    (void)threads;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < k; r++) {
        if (ids && r + 4 < k)
            for (int64_t line = 0; line < d; line += 16) __builtin_prefetch(x + ids[r + 4] * d + line);
        const float *restrict row = x + (ids ? ids[r] : r) * d;
        float total = 0.0f;
        #pragma omp simd reduction(+:total)
        for (int64_t j = 0; j < d; j++) total += row[j] * row[j];
        float norm = sqrtf(total);
        norm = norm > 1e-12f ? norm : 1e-12f;
        norms[r] = norm;
        for (int64_t j = 0; j < d; j++) y[r * d + j] = row[j] / norm;
    }
}

/* The backward of normalize_rows, in place on grads (k x d): g <- (g - y <y, g>) / norm where |x| > 1e-12, else
   g / 1e-12 (the clamped norm is a constant there). */
void normalize_rows_backward(const float *restrict y, const float *restrict norms, int64_t k, int64_t d,
                             float *restrict grads, int64_t threads) {
    (void)threads;
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < k; r++) {
        float along = 0.0f, norm = norms[r];
        if (norm > 1e-12f) {
            #pragma omp simd reduction(+:along)
            for (int64_t j = 0; j < d; j++) along += y[r * d + j] * grads[r * d + j];
        }
        for (int64_t j = 0; j < d; j++) grads[r * d + j] = (grads[r * d + j] - y[r * d + j] * along) / norm;
    }
}

/* One whole training step of BPR on N negatives per row with the dot product, in one call: the path of every
   MF-BPR batch on the CPU (without dropout), where the per-batch work of the separate kernels and of autograd
   would cost as much as the arithmetic. ids (B * (2 + N)) are the users, the positives, then the negatives of the
   batch, rows of weight (n x d), each checked (distinct_rows) before any row is read. In turn: the distinct rows;
   the scores (batch_scores); the loss mean_b sum_k softplus((neg[b, k] - pos[b]) / tau) and its gradient
   (softplus and the sigmoid in their stable forms: finite for any finite scores); the rows' gradients
   (batch_scores_backward); and Adam (row_adam) with the L2 term l2 / B per occurrence of a row (none where l2 is
   0). Scratch from the caller: marked, position (n) as in distinct_rows; unique, inverse, counts (B * (2 + N));
   floats (2 * B * (1 + N) + B * (2 + N)): the scores, their gradients and the rows' decay; grads (B * (2 + N) x d).
   Returns the number of distinct rows and writes the batch's mean loss to loss[0]; or -1, with nothing but marked
   written (the table untouched), where an id lies outside [0, n). */
int64_t bpr_step(float *restrict weight, float *restrict moments, int64_t n, int64_t d,
                 const int64_t *restrict ids, int64_t batch, int64_t n_neg, float tau, float l2, float beta1,
                 float beta2, float eps, float step_size, uint8_t *restrict marked, int64_t *restrict position,
                 int64_t *restrict unique, int64_t *restrict inverse, int64_t *restrict counts,
                 float *restrict floats, float *restrict grads, double *restrict loss, int64_t threads) {
    const int64_t count = batch * (2 + n_neg);
    const int64_t k = distinct_rows(ids, count, n, marked, position, unique, inverse, counts, NULL, NULL, NULL, 1);
    if (k < 0) return -1;
    const int64_t *users = ids, *items = ids + batch, *negatives = ids + 2 * batch;
    float *pos = floats, *neg = pos + batch, *grad_pos = neg + batch * n_neg, *grad_neg = grad_pos + batch;
    float *decay = grad_neg + batch * n_neg;
    batch_scores(weight, d, users, items, negatives, batch, n_neg, pos, neg, threads);
    double total = 0.0;
    for (int64_t b = 0; b < batch; b++) {
        float sum = 0.0f;
        for (int64_t j = 0; j < n_neg; j++) {
            const float x = (neg[b * n_neg + j] - pos[b]) / tau;
            const float e = expf(-fabsf(x));  /* softplus(x) = max(x, 0) + log1p(e^-|x|); sigmoid(x) likewise */
            total += (double)(fmaxf(x, 0.0f) + log1pf(e));
            const float g = (x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e)) / (tau * (float)batch);
            grad_neg[b * n_neg + j] = g;
            sum += g;
        }
        grad_pos[b] = -sum;
    }
    loss[0] = total / (double)batch;
    batch_scores_backward(weight, d, users, items, negatives, batch, n_neg, grad_pos, grad_neg, inverse, grads, k,
                          threads);
    for (int64_t r = 0; r < k; r++) decay[r] = (float)counts[r] * l2 / (float)batch;
    row_adam(weight, moments, unique, grads, l2 > 0.0f ? decay : NULL, k, d, beta1, beta2, eps, step_size, threads);
    return k;
}
