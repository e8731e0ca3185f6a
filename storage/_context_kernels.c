/* Compiled decoding of the context coder (storage/context_coding.py, manifest formats 3 and 4), loaded
 * with ctypes by storage/kernels.py beside the segmented codec's kernels (_kernels.c).
 *
 * The numpy decoder places every element with two stable sorts (by context group, then by byte
 * count) and fancy indexing: ~70 MB/s per thread, measured on three real trajectories
 * (benchmarks/archive_context.py), where zstd's share of the decode was under 5%. These kernels
 * walk the elements in position order instead, keeping one cursor per context group into the
 * counts and one per (byte count, context group) into the lead and low bytes: every stream is in
 * (count, group, position) order, so the k-th element of a group in position order is the k-th of
 * that group in its stream. The decoder calls three of them per tensor, each once the streams it
 * needs are in (mh_ctx_parent_groups, mh_ctx_count_plan, mh_ctx_words): a call through ctypes and
 * the numpy around it cost about as much as 10,000 elements' decoding. tests/test_kernels.py
 * checks them against the numpy decoder bit for bit, damaged input included.
 *
 * The caller checks every stream's length against the histograms these kernels compute, so no
 * cursor leaves its stream. Words are little-endian.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Hot loops are compiled for three x86-64 levels and the best one for the running processor is
 * picked when the library loads (GCC's target_clones, an ifunc), so a build runs on any x86-64 and
 * uses AVX2/AVX-512 where present: split and join of bfloat16 1.35-1.5x faster on this machine's
 * AVX-512 (storage/_kernels.c). Other compilers and processors build the plain version. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MH_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define MH_CLONES
#endif

/* Histogram of the parent's exponent field: hist[e] for e in 0..emask, from four partial
 * histograms (``scratch``: 4 * (emask + 1) int64) summed at the end: neighbours often share an
 * exponent, and one histogram would make each increment wait for the previous one's store. */
#define MH_EXP_HIST(T)                                                                     \
    MH_CLONES static void exp_hist_##T(const T *restrict base, size_t n, int man_bits, unsigned emask, \
                             int64_t *restrict hist, int64_t *restrict part) {            \
        const size_t bins = (size_t)emask + 1, quads = n / 4;                              \
        memset(part, 0, 4 * bins * sizeof(int64_t));                                       \
        for (size_t q = 0; q < quads; q++)                                                  \
            for (int k = 0; k < 4; k++) part[k * bins + ((unsigned)(base[4 * q + k] >> man_bits) & emask)]++; \
        for (size_t i = 4 * quads; i < n; i++) part[(unsigned)(base[i] >> man_bits) & emask]++; \
        for (size_t e = 0; e < bins; e++) hist[e] = part[e] + part[bins + e] + part[2 * bins + e] + part[3 * bins + e]; \
    }

MH_EXP_HIST(uint16_t)
MH_EXP_HIST(uint32_t)
MH_EXP_HIST(uint64_t)

int mh_ctx_exp_hist(const void *base, size_t n, int itemsize, int man_bits, unsigned emask, int64_t *hist,
                    int64_t *scratch) {
    switch (itemsize) {
    case 2: exp_hist_uint16_t(base, n, man_bits, emask, hist, scratch); return 0;
    case 4: exp_hist_uint32_t(base, n, man_bits, emask, hist, scratch); return 0;
    case 8: exp_hist_uint64_t(base, n, man_bits, emask, hist, scratch); return 0;
    }
    return -2;
}

/* Bin -> group label, exactly context_coding.merge_bins: non-empty bins in increasing order, a
 * group closed at the first bin where it holds >= min_group elements, a trailing group below
 * min_group joined to the one before (or the only group, when the whole histogram is smaller);
 * empty bins get label 0. Also each group's size, in group order. Returns the number of groups, or
 * -1 for min_group < 1 (no group would ever close). The decoder merges bins five times per float32
 * tensor; merge_bins in numpy cost ~10% of a decode. */
int64_t mh_ctx_groups(const int64_t *hist, int64_t nbins, int64_t min_group, int64_t *labels, int64_t *sizes) {
    if (min_group < 1) return -1;
    int64_t ngroups = 0, held = 0;
    for (int64_t b = 0; b < nbins; b++) {
        labels[b] = 0;
        if (!hist[b]) continue;
        labels[b] = ngroups;
        held += hist[b];
        if (held >= min_group) { sizes[ngroups++] = held; held = 0; }
    }
    if (held && ngroups) {                      /* the trailing group joins the one before */
        sizes[ngroups - 1] += held;
        for (int64_t b = 0; b < nbins; b++) if (labels[b] == ngroups) labels[b] = ngroups - 1;
    } else if (held) {
        sizes[ngroups++] = held;
    }
    return ngroups;
}

/* The byte counts of every element in (context group, position) order, unpacked from their
 * base-(s+1) digits (k per byte, first element lowest; the packed groups are concatenated), and
 * hist[c * ngroups + g]: elements of group g with c significant bytes. ``counts`` has room for
 * 8 bytes past its end (each code's digits are copied as one 8-byte row). Returns 0, -1 when a
 * code (padding byte included) is out of range, -2 for an itemsize the coder never writes. */
MH_CLONES int mh_ctx_counts(const uint8_t *restrict packed, const int64_t *sizes, int64_t ngroups, int s,
                  uint8_t *restrict counts, int64_t *restrict hist) {
    const int k = s == 2 ? 5 : s == 4 ? 3 : s == 8 ? 2 : 0;
    if (!k) return -2;
    const int radix = s + 1;
    int limit = 1;
    for (int j = 0; j < k; j++) limit *= radix;
    uint8_t digits[256][8];
    memset(digits, 0, sizeof digits);
    for (int code = 0; code < limit; code++)
        for (int j = 0, v = code; j < k; j++, v /= radix) digits[code][j] = (uint8_t)(v % radix);
    for (int64_t g = 0; g < ngroups; g++) {
        /* histogram of the codes, turned into one of the digits at the end: one increment per
         * byte instead of one per element */
        int64_t codes[256] = {0}, h[9] = {0};
        const int64_t size = sizes[g], full = size / k, rest = size % k;
        for (int64_t b = 0; b < full; b++) {
            const uint8_t code = packed[b];
            codes[code]++;
            memcpy(counts + b * k, digits[code], 8);
        }
        for (int code = limit; code < 256; code++) if (codes[code]) return -1;
        for (int code = 0; code < limit; code++)
            if (codes[code]) for (int j = 0; j < k; j++) h[digits[code][j]] += codes[code];
        packed += full;
        counts += full * k;
        if (rest) {
            const uint8_t code = *packed++;
            if (code >= limit) return -1;
            for (int j = 0; j < rest; j++) h[digits[code][j]]++;
            memcpy(counts, digits[code], (size_t)rest);
            counts += rest;
        }
        for (int c = 0; c <= s; c++) hist[c * ngroups + g] = h[c];
    }
    return 0;
}

/* The decoder's first step: the parent's exponent histogram merged into context groups. label[b]
 * (uint16, as the gather takes it) for every exponent value b, sizes[g] for every group; returns
 * the number of groups, -1 for min_group < 1, -2 for an itemsize the coder never writes. ``scratch``
 * holds 6 * (emask + 1) int64. */
int64_t mh_ctx_parent_groups(const void *base, size_t n, int itemsize, int man_bits, unsigned emask,
                             int64_t min_group, uint16_t *label, int64_t *sizes, int64_t *scratch) {
    const int64_t bins = (int64_t)emask + 1;
    int64_t *hist = scratch, *part = scratch + bins, *labels = scratch + 5 * bins;
    if (mh_ctx_exp_hist(base, n, itemsize, man_bits, emask, hist, part) != 0) return -2;
    const int64_t ngroups = mh_ctx_groups(hist, bins, min_group, labels, sizes);
    for (int64_t b = 0; ngroups >= 0 && b < bins; b++) label[b] = (uint16_t)labels[b];
    return ngroups;
}

/* The decoder's second step, once the counts streams are in: every element's byte count (group
 * order) and hist[c * ngroups + g] (mh_ctx_counts), then how many elements of each count there are
 * (per_count[c]) and how count c's lead bytes are grouped: n_lead[c] lead groups of lead_sizes[...]
 * elements, for c = 1..s one after the other (the order of their streams in the blob). Returns 0,
 * -1 for a code out of range, -2 for an itemsize the coder never writes, -3 for min_group < 1.
 * ``scratch`` holds ngroups int64. */
int mh_ctx_count_plan(const uint8_t *packed, const int64_t *sizes, int64_t ngroups, int s, int64_t min_group,
                      uint8_t *counts, int64_t *hist, int64_t *per_count, int64_t *lead_sizes, int64_t *n_lead,
                      int64_t *scratch) {
    const int rc = mh_ctx_counts(packed, sizes, ngroups, s, counts, hist);
    if (rc != 0) return rc;
    per_count[0] = n_lead[0] = 0;
    for (int g = 0; g < ngroups; g++) per_count[0] += hist[g];
    for (int c = 1; c <= s; c++) {
        const int64_t k = mh_ctx_groups(hist + c * ngroups, ngroups, min_group, scratch, lead_sizes);
        if (k < 0) return -3;
        per_count[c] = 0;
        for (int64_t g = 0; g < k; g++) per_count[c] += lead_sizes[g];
        n_lead[c] = k;
        lead_sizes += k;
    }
    return 0;
}

/* Every element's delta word, in place in ``out``: count c at the group's cursor, then the lead
 * byte and the c - 1 low bytes (low byte first) at the cursor of (c, group).
 *
 * count_pos[g] starts where group g's run begins in the counts (advanced in place); hist[c * ngroups
 * + g] counts the elements of group g with count c, whose run in count c's streams begins after those
 * of the groups before. lead[c] and low[c] are count c's streams, low_len[c] the
 * length of low[c]. Every element takes the same path, with no branch on c (it varies from element
 * to element, and mispredicted branches cost more than the rest of the loop): an element of count 0
 * or 1 reads its missing bytes from 8 zeros.
 *
 * Two passes over each block of MH_GATHER_BLOCK elements. The first finds every element's key
 * c * ngroups + g (its count, read at its group's cursor); the second reads its bytes at the key's
 * run (mh_run: the run's two cursors and everything its count decides, in one cache line). In one
 * pass, the address of the second cursor waited on the count's load, which waited on the first
 * cursor's store by the element before: one chain of dependent loads through every element. Split,
 * each pass has one chain of its own whose addresses are known early (the keys are read in order).
 * The gather of the EfficientNet-Lite0 fine-tune's 84 deltas (15.4 M elements; one thread, warm,
 * best of 5): 128 ms in one pass, 85-87 ms in two, and 6-7% less with the runs' cursors as
 * pointers in one struct instead of indexes into per-count tables.
 *
 * The low bytes are read as one 8-byte word, masked; an element whose word would end past its
 * stream reads from a padded copy of the stream's last bytes instead (the branch is taken only by
 * the last few elements of each stream), so the streams are read where they lie, unpadded. */
static const uint8_t mh_zeros[8];

#define MH_GATHER_BLOCK 4096
#define MH_MAX_GROUPS 2048   /* one per exponent value at most: float64 has 11 exponent bits */

/* The delta undone in place (storage/_kernels.c), a block at a time right after the block's words
 * are gathered, while they are in L1: a loop of its own, which the compiler vectorizes (inside the
 * gather's loop it made every element ~20% slower); as a pass of its own over the whole tensor it
 * read and wrote every word from memory again. */
int mh_undo_delta(const void *base, size_t n, int itemsize, int op, void *out);

typedef struct {
    const uint8_t *lead;        /* cursor: the next lead byte of this (count, group) run */
    const uint8_t *low;         /* cursor: the next element's low bytes */
    uintptr_t low_safe;         /* from here on, an 8-byte read would pass the stream's end */
    const uint8_t *tail;        /* a padded copy of the stream from low_safe on */
    uint64_t mask;              /* the low bytes' mask */
    int64_t stride, lead_step;  /* bytes per element in the low and the lead streams */
    int64_t shift;              /* the lead byte's place */
} mh_run;

/* Element b0 + i's word from its run (its key's). */
#define MH_GATHER_ONE(T, i)                                                                \
    do {                                                                                   \
        mh_run *r = runs + key[i];                                                         \
        const uint8_t *pl = r->lead, *pw = r->low;                                         \
        r->lead = pl + r->lead_step;                                                       \
        r->low = pw + r->stride;                                                           \
        if ((uintptr_t)pw >= r->low_safe) pw = r->tail + ((uintptr_t)pw - r->low_safe);   \
        uint64_t bytes;                                                                    \
        memcpy(&bytes, pw, 8);                                                             \
        out[b0 + (i)] = (T)(((T)*pl << r->shift) | (T)(bytes & r->mask));                  \
    } while (0)

#define MH_CTX_GATHER(T)                                                                   \
    MH_CLONES static void gather_##T(const T *restrict base, size_t n, int man_bits, unsigned emask, \
                           const uint16_t *restrict label, int64_t ngroups,                \
                           const uint8_t *restrict counts, int64_t *restrict count_pos,    \
                           const uint8_t *const *lead, const int64_t *restrict hist,       \
                           const uint8_t *const *low, const int64_t *low_len, int op,      \
                           mh_run *restrict runs, T *restrict out) {                        \
        enum { S = sizeof(T) };                                                            \
        uint8_t tails[S + 1][32];                                                          \
        uint16_t key[MH_GATHER_BLOCK], at[MH_GATHER_BLOCK];                                \
        memset(tails, 0, sizeof tails);                                                    \
        for (int c = 0; c <= S; c++) {                                                     \
            const uint8_t *lows = c >= 2 ? low[c] : mh_zeros;                              \
            const int64_t stride = c >= 2 ? c - 1 : 0;                                     \
            uintptr_t safe = (uintptr_t)mh_zeros + 1;                                      \
            if (c >= 2) {                                                                  \
                const int64_t len = low_len[c];                                            \
                const int64_t k = len >= 8 ? (len - 8) / stride + 1 : 0;                   \
                safe = (uintptr_t)(lows + k * stride);                                     \
                if (len > k * stride) memcpy(tails[c], lows + k * stride, (size_t)(len - k * stride)); \
            }                                                                              \
            for (int64_t g = 0, j = 0; g < ngroups; j += hist[c * ngroups + g++]) {        \
                mh_run *r = runs + c * ngroups + g;    /* j: where the run begins */       \
                r->lead = c ? lead[c] + j : mh_zeros;                                      \
                r->lead_step = c != 0;                                                     \
                r->low = c >= 2 ? lows + j * stride : mh_zeros;                            \
                r->stride = stride;                                                        \
                r->low_safe = safe;                                                        \
                r->tail = tails[c];                                                        \
                r->mask = c >= 2 ? (1ULL << (8 * (c - 1))) - 1 : 0;                         \
                r->shift = c ? 8 * (c - 1) : 0;                                             \
            }                                                                              \
        }                                                                                  \
        for (size_t b0 = 0; b0 < n; b0 += MH_GATHER_BLOCK) {                               \
            const size_t m = n - b0 < MH_GATHER_BLOCK ? n - b0 : MH_GATHER_BLOCK;          \
            size_t unchanged = 0;                                                          \
            for (size_t i = 0; i < m; i++) {                                               \
                const int64_t g = label[(unsigned)(base[b0 + i] >> man_bits) & emask];     \
                const unsigned k = (unsigned)(counts[count_pos[g]++] * ngroups + g);       \
                key[i] = (uint16_t)k;                                                      \
                unchanged += k < (unsigned)ngroups;          /* count 0: equal to its parent */ \
            }                                                                              \
            if (2 * unchanged > m) {                                                       \
                /* most of the block is unchanged (a bfloat16 fine-tune: 81% of its delta elements): \
                 * zero words for all, then only the changed ones read their bytes */          \
                size_t changed = 0;                                                        \
                for (size_t i = 0; i < m; i++) {                                           \
                    at[changed] = (uint16_t)i;                                             \
                    changed += key[i] >= (unsigned)ngroups;                                \
                }                                                                          \
                memset(out + b0, 0, m * sizeof(T));                                        \
                for (size_t q = 0; q < changed; q++) {                                     \
                    const size_t i = at[q];                                                \
                    MH_GATHER_ONE(T, i);                                                   \
                }                                                                          \
            } else {                                                                       \
                for (size_t i = 0; i < m; i++) {                                           \
                    MH_GATHER_ONE(T, i);                                                   \
                }                                                                          \
            }                                                                              \
            mh_undo_delta(base + b0, m, S, op, out + b0);                                  \
        }                                                                                  \
    }

MH_CTX_GATHER(uint16_t)
MH_CTX_GATHER(uint32_t)
MH_CTX_GATHER(uint64_t)

/* The decoder's last step. ``sizes`` and ``hist`` as mh_ctx_count_plan had them; the cursors start
 * where each run begins (prefix sums). ``cursors``: room for ngroups int64 and (itemsize + 1) *
 * ngroups runs: mh_ctx_words_scratch(itemsize, ngroups) int64 in all. */
int64_t mh_ctx_words_scratch(int itemsize, int64_t ngroups) {
    return ngroups + (itemsize + 1) * ngroups * (int64_t)((sizeof(mh_run) + 7) / 8);
}

int mh_ctx_words(const void *base, size_t n, int itemsize, int man_bits, unsigned emask,
                 const uint16_t *label, int64_t ngroups, const uint8_t *counts, const int64_t *sizes,
                 const int64_t *hist, const uint8_t *const *lead, const uint8_t *const *low, const int64_t *low_len,
                 int op, int64_t *cursors, void *out) {
    if (op != 0 && op != 1) return -3;   /* the context coder writes xor and osub deltas only */
    if (ngroups > MH_MAX_GROUPS) return -4;   /* keys are 16 bits: (s + 1) * ngroups < 2^16 of them */
    if (itemsize != 2 && itemsize != 4 && itemsize != 8) return -2;
    int64_t *count_pos = cursors;
    mh_run *runs = (mh_run *)(cursors + ngroups);
    for (int64_t g = 0, at = 0; g < ngroups; at += sizes[g++]) count_pos[g] = at;
    switch (itemsize) {
    case 2: gather_uint16_t(base, n, man_bits, emask, label, ngroups, counts, count_pos, lead, hist, low, low_len, op, runs, out); return 0;
    case 4: gather_uint32_t(base, n, man_bits, emask, label, ngroups, counts, count_pos, lead, hist, low, low_len, op, runs, out); return 0;
    case 8: gather_uint64_t(base, n, man_bits, emask, label, ngroups, counts, count_pos, lead, hist, low, low_len, op, runs, out); return 0;
    }
    return -2;
}

/* -- encoding: delta_streams (context_coding.py) in two passes over the elements ---------------- */

/* Pass one (three loops over the elements): every
 * element's delta word against its parent (op 0 xor, 1 osub: the zigzagged
 * difference of the floats' order-preserving maps, exactly deltas.apply_delta) into ``z``, its
 * number of significant bytes (byteclass.byte_counts) into ``counts``, and hist[c * ngroups + g]:
 * elements of context group g with c significant bytes. The numpy encoder made the same with a
 * stable sort by group, another by count and three gathers through the permutations: ~2/3 of a
 * bfloat16 delta's encode once zstd's optimal parser stopped running where it cannot win. */
#define MH_CTX_DELTA(T, BITS)                                                              \
    MH_CLONES static void delta_##T(const T *restrict words, const T *restrict base, size_t n, \
                          int op, T *restrict z, uint8_t *restrict counts) {               \
        const T magnitude = (T)(((T)1 << (BITS - 1)) - 1);                                  \
        if (op == 0) {                                                                     \
            for (size_t i = 0; i < n; i++) z[i] = words[i] ^ base[i];                      \
        } else {                                                                           \
            for (size_t i = 0; i < n; i++) {                                               \
                const T x = words[i], b = base[i];                                         \
                const T ox = x ^ ((T)(0 - (x >> (BITS - 1))) & magnitude);                 \
                const T ob = b ^ ((T)(0 - (b >> (BITS - 1))) & magnitude);                 \
                const T d = (T)(ox - ob);                                                  \
                z[i] = (T)((T)(d << 1) ^ (T)(0 - (d >> (BITS - 1))));                       \
            }                                                                              \
        }                                                                                  \
        for (size_t i = 0; i < n; i++) {                                                   \
            const T v = z[i];                                                              \
            int c = 0;                                                                     \
            for (int k = 0; k < (int)sizeof(T); k++) c += (k ? v >= ((T)1 << (8 * k)) : v > 0); \
            counts[i] = (uint8_t)c;                                                        \
        }                                                                                  \
    }

MH_CTX_DELTA(uint16_t, 16)
MH_CTX_DELTA(uint32_t, 32)
MH_CTX_DELTA(uint64_t, 64)

/* hist[c * ngroups + g] of pass one: one histogram, with a cell per (count, group), so that
 * neighbours rarely increment the same cell back to back (mh_ctx_exp_hist splits its 256 bins in four). */
#define MH_CTX_HIST2(T)                                                                    \
    MH_CLONES static void hist2_##T(const T *restrict base, size_t n, int man_bits, unsigned emask, \
                          const uint16_t *restrict label, int64_t ngroups,                 \
                          const uint8_t *restrict counts, int64_t *restrict hist) {        \
        for (size_t i = 0; i < n; i++)                                                     \
            hist[counts[i] * ngroups + label[(unsigned)(base[i] >> man_bits) & emask]]++;  \
    }

MH_CTX_HIST2(uint16_t)
MH_CTX_HIST2(uint32_t)
MH_CTX_HIST2(uint64_t)

int mh_ctx_delta_counts(const void *words, const void *base, size_t n, int itemsize, int man_bits,
                        unsigned emask, const uint16_t *label, int64_t ngroups, int op, void *z,
                        uint8_t *counts, int64_t *hist) {
    if (op != 0 && op != 1) return -3;
    memset(hist, 0, (size_t)(itemsize + 1) * (size_t)ngroups * sizeof(int64_t));
    switch (itemsize) {
    case 2: delta_uint16_t(words, base, n, op, z, counts);
            hist2_uint16_t(base, n, man_bits, emask, label, ngroups, counts, hist); return 0;
    case 4: delta_uint32_t(words, base, n, op, z, counts);
            hist2_uint32_t(base, n, man_bits, emask, label, ngroups, counts, hist); return 0;
    case 8: delta_uint64_t(words, base, n, op, z, counts);
            hist2_uint64_t(base, n, man_bits, emask, label, ngroups, counts, hist); return 0;
    }
    return -2;
}

/* Pass two, the decoder's gather turned around: each element's count to its group's cursor in
 * ``counts_out`` (group order), its lead byte and its c - 1 low bytes to the cursor of (c, group)
 * in count c's streams. Branch-free as the gather is: an element of count 0 writes its lead byte
 * to a sink, one of count 0 or 1 its low bytes there too, and every element makes the same S - 1
 * byte stores, those past its c - 1 repeating its first (a wider store would reach into the next
 * group's run, which an earlier element may have written). count_pos and lead_pos start where
 * each run begins and are advanced in place. */
#define MH_CTX_SCATTER(T)                                                                  \
    MH_CLONES static void scatter_##T(const T *restrict z, const T *restrict base, size_t n,  \
                            int man_bits, unsigned emask, const uint16_t *restrict label,  \
                            int64_t ngroups, const uint8_t *restrict counts,               \
                            int64_t *restrict count_pos, uint8_t *restrict counts_out,     \
                            uint8_t *const *lead, int64_t *restrict lead_pos,              \
                            uint8_t *const *low) {                                         \
        enum { S = sizeof(T) };                                                            \
        uint8_t sink[16];                                                                  \
        uint8_t *leads[S + 1], *lows[S + 1];                                               \
        int shift[S + 1];                                                                  \
        int64_t stride[S + 1];                                                             \
        memset(sink, 0, sizeof sink);                                                      \
        for (int c = 0; c <= S; c++) {                                                     \
            leads[c] = c ? lead[c] : sink;                                                 \
            lows[c] = c >= 2 ? low[c] : sink;                                              \
            stride[c] = c >= 2 ? c - 1 : 0;                                                \
            shift[c] = c ? 8 * (c - 1) : 0;                                                \
        }                                                                                  \
        for (size_t i = 0; i < n; i++) {                                                   \
            const int64_t g = label[(unsigned)(base[i] >> man_bits) & emask];              \
            const int c = counts[i];                                                       \
            const T v = z[i];                                                              \
            counts_out[count_pos[g]++] = (uint8_t)c;                                       \
            const int64_t j = lead_pos[c * ngroups + g]++ & -(int64_t)(c != 0);             \
            leads[c][j] = (uint8_t)(v >> shift[c]);                                        \
            uint8_t *p = lows[c] + j * stride[c];                                          \
            for (int k = 0; k < S - 1; k++) {                                              \
                const int at = k < c - 1 ? k : 0;                                          \
                p[at] = (uint8_t)(v >> (8 * at));                                          \
            }                                                                              \
        }                                                                                  \
    }

MH_CTX_SCATTER(uint16_t)
MH_CTX_SCATTER(uint32_t)
MH_CTX_SCATTER(uint64_t)

int mh_ctx_scatter(const void *z, const void *base, size_t n, int itemsize, int man_bits, unsigned emask,
                   const uint16_t *label, int64_t ngroups, const uint8_t *counts, int64_t *count_pos,
                   uint8_t *counts_out, uint8_t *const *lead, int64_t *lead_pos, uint8_t *const *low) {
    switch (itemsize) {
    case 2: scatter_uint16_t(z, base, n, man_bits, emask, label, ngroups, counts, count_pos, counts_out, lead, lead_pos, low); return 0;
    case 4: scatter_uint32_t(z, base, n, man_bits, emask, label, ngroups, counts, count_pos, counts_out, lead, lead_pos, low); return 0;
    case 8: scatter_uint64_t(z, base, n, man_bits, emask, label, ngroups, counts, count_pos, counts_out, lead, lead_pos, low); return 0;
    }
    return -2;
}

/* -- the blob's stream table ---------------------------------------------------------------------- */

/* A varint at *pos; 0, or -1 where it is cut short. One past 64 bits reads as UINT64_MAX (more than
 * any blob holds), so it is refused as the Python reader, with Python's unbounded ints, refuses it. */
static int64_t mh_varint(const uint8_t *blob, int64_t len, int64_t *pos, uint64_t *value) {
    uint64_t v = 0;
    int overflow = 0;
    for (int shift = 0; *pos < len && shift < 64; shift += 7) {
        const uint8_t byte = blob[(*pos)++];
        if (shift == 63 && (byte & 0x7F) > 1) overflow = 1;
        v |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *value = overflow ? UINT64_MAX : v;
            return 0;
        }
    }
    return -1;
}

#define MH_MAX_STREAMS 65536   /* context_coding.MAX_STREAMS */

/* The stream table of a DCX2 blob (context_coding._container: from byte 4 a varint stream count, then
 * per stream a varint of stored length << 2 | coding, then the streams, back to back, to the blob's
 * end). Returns the stream count and, when ``table`` has room for them (``room`` streams), writes each
 * stream's (offset in the blob, stored length, coding) into it, 3 per stream; with too little room
 * nothing else is read (call again with room for the count). Where the blob is damaged: -1 a varint
 * is cut short, -2 it lists more streams than it has bytes, -3 bytes follow the last stream, -4 it lists more
 * than MH_MAX_STREAMS (so a damaged count never sizes a table), -(16 + i) stream i has an unknown
 * coding or passes the blob's end. Read in Python, the varints were ~2% of
 * decoding the EfficientNet-Lite0 fine-tune's float32 deltas. */
int64_t mh_ctx_stream_table(const uint8_t *blob, int64_t len, int64_t room, int64_t *table) {
    int64_t pos = 4;
    uint64_t count, entry;
    if (len < 4) return -1;
    if (mh_varint(blob, len, &pos, &count) != 0) return -1;
    if (count > (uint64_t)len) return -2;
    if (count > MH_MAX_STREAMS) return -4;
    if (count > (uint64_t)room) return (int64_t)count;
    for (uint64_t i = 0; i < count; i++) {
        if (mh_varint(blob, len, &pos, &entry) != 0) return -1;
        table[3 * i + 1] = (int64_t)(entry >> 2);
        table[3 * i + 2] = (int64_t)(entry & 3);
    }
    for (uint64_t i = 0; i < count; i++) {
        const uint64_t length = (uint64_t)table[3 * i + 1];
        if (table[3 * i + 2] > 2 || length > (uint64_t)(len - pos)) return -(16 + (int64_t)i);
        table[3 * i] = pos;
        pos += (int64_t)length;
    }
    return pos == len ? (int64_t)count : -3;
}
