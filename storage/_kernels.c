/* Compiled per-element loops of the segmented codec (loaded with ctypes by storage/kernels.py).
 *
 * Each function is the exact equivalent of a numpy routine that stays in the package as the
 * reference and the fallback (bitfields.split_fields / join_fields, planepack._pack_plane /
 * decode, bits7.encode_bits7 / decode_bits7); tests/test_kernels.py checks them bit for bit.
 * numpy runs several short operations per block and takes the GIL back between them, so the
 * threads of a commit or checkout mostly wait for each other; a call here releases it once
 * (figures in storage/kernels.py).
 *
 * Plain C with no Python API: ctypes releases the GIL around every call, so tensors encode and
 * decode in parallel threads. Words are little-endian (the only byte order modelhub stores).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Hot loops are compiled for three x86-64 levels and the best one for the running processor is
 * picked when the library loads (GCC's target_clones, an ifunc), so a build runs on any x86-64 and
 * uses AVX2/AVX-512 where present: split and join of bfloat16 1.35-1.5x faster on this machine's
 * AVX-512. Other compilers and processors build the plain version. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MH_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define MH_CLONES
#endif

#define MH_MAX_FIELDS 64

/* Elements per block: each field is one simple loop over a block (vectorized by the compiler),
 * and the block's words stay in cache across its fields. A loop over elements with the fields
 * inside (writes through uint8_t pointers may alias everything) ran 1.6x slower than numpy (split, bfloat16). */
#define MH_BLOCK 16384

/* Eight bytes of 0 or 1 (element j in byte j) -> one byte (element j in bit j). */
#define MH_GATHER_BITS 0x0102040810204080ULL

/* o[i] = (w[i] >> s) & mask over m 16-bit words, the shift a constant in each case: gcc shifts
 * 16-bit lanes by a constant (vpsrlw) but widens a variable shift of a 16-bit word to 32-bit lanes
 * and packs back (MH_PLACE below is the same for the join). */
static inline void shifted_bytes_u16(const uint16_t *restrict w, size_t m, int s, uint8_t mask,
                                     uint8_t *restrict o) {
    switch (s & 15) {
#define MH_SHIFT_CASE(k) \
    case k: for (size_t i = 0; i < m; i++) o[i] = (uint8_t)((unsigned)(w[i] >> k) & mask); return;
    MH_SHIFT_CASE(0) MH_SHIFT_CASE(1) MH_SHIFT_CASE(2) MH_SHIFT_CASE(3)
    MH_SHIFT_CASE(4) MH_SHIFT_CASE(5) MH_SHIFT_CASE(6) MH_SHIFT_CASE(7)
    MH_SHIFT_CASE(8) MH_SHIFT_CASE(9) MH_SHIFT_CASE(10) MH_SHIFT_CASE(11)
    MH_SHIFT_CASE(12) MH_SHIFT_CASE(13) MH_SHIFT_CASE(14) MH_SHIFT_CASE(15)
#undef MH_SHIFT_CASE
    }
}

/* One field's bytes (its bits, for width 1) of the block's words (sizeof(T) is a constant: the
 * branch not taken is compiled away). */
#define MH_SHIFTED_BYTES(T, w, m, s, mask, o)                                               \
    do {                                                                                   \
        if (sizeof(T) == 2)                                                                \
            shifted_bytes_u16((const uint16_t *)(w), (m), (s), (mask), (o));               \
        else                                                                               \
            for (size_t i_ = 0; i_ < (m); i_++) (o)[i_] = (uint8_t)((w)[i_] >> (s)) & (mask); \
    } while (0)

#define MH_SPLIT(T)                                                                        \
    MH_CLONES static void split_##T(const T *restrict w, size_t n, int nfields, const int *shifts,   \
                          const int *widths, uint8_t *const *outs) {                       \
        uint8_t bits[MH_BLOCK];                                                            \
        for (size_t start = 0; start < n; start += MH_BLOCK) {                             \
            size_t stop = start + MH_BLOCK < n ? start + MH_BLOCK : n, m = stop - start;   \
            for (int f = 0; f < nfields; f++) {                                            \
                const int s = shifts[f];                                                   \
                uint8_t *restrict o = outs[f];                                             \
                if (widths[f] == 1) {  /* start is a multiple of 8 */                       \
                    MH_SHIFTED_BYTES(T, w + start, m, s, 1u, bits);                        \
                    size_t full = m / 8;                                                   \
                    for (size_t k = 0; k < full; k++) {                                    \
                        uint64_t x;                                                        \
                        memcpy(&x, bits + 8 * k, 8);                                       \
                        o[start / 8 + k] = (uint8_t)((x * MH_GATHER_BITS) >> 56);          \
                    }                                                                      \
                    if (m % 8) {                                                           \
                        uint8_t byte = 0;                                                  \
                        for (size_t j = 0; j < m % 8; j++) byte |= (uint8_t)(bits[8 * full + j] << j); \
                        o[start / 8 + full] = byte;                                        \
                    }                                                                      \
                } else {                                                                   \
                    const uint8_t mask = (uint8_t)(widths[f] >= 8 ? 0xFF : (1u << widths[f]) - 1u); \
                    MH_SHIFTED_BYTES(T, w + start, m, s, mask, o + start);                 \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
    }

/* Where a joined field's values come from. A field as split_fields wrote it (FIELD: packed bits for
 * width 1, else one byte per element), or still in its stored coding: a packed plane's codes
 * (PACKED, planepack.py: bits 2 or 4, window from lo, escapes beside) or a bits7 blob (BITS7,
 * bits7.py). Joining from the stored coding unpacks a block at a time into the block buffer, so the
 * unpacked plane never exists whole: on a bfloat16 checkout that was a plane written and read again
 * per field, in memory freshly faulted in, for every tensor. */
#define MH_SRC_FIELD 0
#define MH_SRC_PACKED 1
#define MH_SRC_BITS7 2

typedef struct {
    const uint8_t *data;      /* the field, the codes, or the bits7 blob */
    const uint8_t *escapes;   /* PACKED: the escape bytes, in element order */
    size_t n_escapes;         /* PACKED: how many there are */
    size_t found;             /* out. PACKED: escape codes met; BITS7: 1 when a stray top bit was set */
    int kind;
    int bits;                 /* PACKED: 2 or 4 */
    int lo;                   /* PACKED: the window's first byte value */
} mh_source;

/* Elements [start, stop) of a packed plane into v; start is a multiple of 8. Every code is first
 * turned into lo + code (vectorized), then the escape codes are found 8 packed bytes at a time (a
 * code is all ones exactly where AND-ing the word with itself shifted leaves its low bit set) and
 * only those elements are overwritten, from the escapes in element order (never past the last). */
static inline void packed_block(mh_source *src, size_t start, size_t stop, uint8_t *restrict v) {
    const int bits = src->bits, per = 8 / bits;
    const uint8_t esc = (uint8_t)((1u << bits) - 1u), lo = (uint8_t)src->lo;
    const uint8_t *restrict c = src->data + start / (size_t)per;
    const size_t m = stop - start, full = m / (size_t)per;
    if (bits == 4) {
        for (size_t k = 0; k < full; k++) {
            v[2 * k] = (uint8_t)(lo + (c[k] & 0x0F));
            v[2 * k + 1] = (uint8_t)(lo + (c[k] >> 4));
        }
    } else {
        for (size_t k = 0; k < full; k++) {
            uint8_t b = c[k];
            v[4 * k] = (uint8_t)(lo + (b & 3));
            v[4 * k + 1] = (uint8_t)(lo + ((b >> 2) & 3));
            v[4 * k + 2] = (uint8_t)(lo + ((b >> 4) & 3));
            v[4 * k + 3] = (uint8_t)(lo + (b >> 6));
        }
    }
    for (size_t i = full * (size_t)per; i < m; i++)
        v[i] = (uint8_t)(lo + ((c[full] >> ((i - full * per) * bits)) & esc));
    const uint64_t low_bits = bits == 4 ? 0x1111111111111111ULL : 0x5555555555555555ULL;
    const size_t nbytes = (m * (size_t)bits + 7) / 8;
    size_t e = src->found;
    for (size_t k = 0; k < nbytes; k += 8) {
        uint64_t x = 0;
        if (nbytes - k >= 8)
            memcpy(&x, c + k, 8);
        else
            memcpy(&x, c + k, nbytes - k);
        uint64_t t = x & (x >> 1);
        if (bits == 4) t &= t >> 2;
        if (!(t & low_bits)) continue;
        size_t first = k * (size_t)per, last = first + 8 * (size_t)per;
        for (size_t i = first; i < last && i < m; i++) {
            if (((c[i / per] >> ((i % per) * bits)) & esc) == esc) {
                if (e < src->n_escapes) v[i] = src->escapes[e];
                e++;
            }
        }
    }
    src->found = e;
}

/* The tail's m elements from the top bits of its seven planes (plane b: bit b of every tail
 * element; planes t bytes apart, starting at q). Written as a select on the sign of each byte, one
 * plane after the other over the same output: the compiler vectorizes that (a compare and an AND
 * per 32 bytes); written as a variable shift of bytes, which AVX2 lacks, it stayed scalar and was
 * a third of a bfloat16 checkout's join. */
static inline void bits7_gather(const uint8_t *restrict q, size_t t, size_t m, uint8_t *restrict v) {
    for (size_t j = 0; j < m; j++) v[j] = (int8_t)q[j] < 0 ? 1 : 0;
    for (int b = 1; b < 7; b++) {
        const uint8_t *restrict qb = q + (size_t)b * t;
        const uint8_t bit = (uint8_t)(1u << b);
        for (size_t j = 0; j < m; j++) v[j] |= (int8_t)qb[j] < 0 ? bit : 0;
    }
}

/* Elements [start, stop) of a bits7 field of n elements into v (bits7.py: the first n - n/8 stored
 * as bytes, their top bits holding the last n/8 elements' seven bits, one bit plane per t bytes). */
static inline void bits7_block(const mh_source *src, size_t n, size_t start, size_t stop, uint8_t *restrict v) {
    const uint8_t *restrict p = src->data;
    const size_t t = n / 8, head = n - t;
    size_t i = start;
    for (; i < stop && i < head; i++) v[i - start] = p[i] & 0x7F;
    if (i == stop) return;
    bits7_gather(p + (i - head), t, stop - i, v + (i - start));
}

/* A field's byte v moved to its place s in a word of type T. Words narrower than int are
 * multiplied by k = 1 << s: C widens v << s to int, and with s a variable gcc then shifts 32-bit
 * lanes and packs them back (two widenings and a pack per 16 words); the product it computes in
 * 16-bit lanes (vpmullw). Wider words have their own lane shifts; there a multiply would be the
 * slow path (AVX2 has no 64-bit one). */
#define MH_PLACE(T, v, s, k) (sizeof(T) <= 2 ? (T)((v) * (k)) : (T)((T)(v) << (s)))

/* Words per block of the join: every field's bytes for the block, then the words, all in L1. */
#define MH_JOIN_BLOCK 4096

/* A block of one field's bytes (one per word) from its source into v, or, for a plain field of
 * bytes, the field itself: the returned pointer is where the block's bytes are. */
static inline const uint8_t *field_block(mh_source *src, size_t n, int width, size_t start, size_t stop,
                                         uint8_t *restrict v, const uint64_t *spread) {
    if (src->kind == MH_SRC_PACKED) {
        packed_block(src, start, stop, v);
    } else if (src->kind == MH_SRC_BITS7) {
        bits7_block(src, n, start, stop, v);
    } else if (width == 1) {   /* each packed byte spread to 8 bytes of 0 or 1 */
        for (size_t k = 0; k < (stop - start + 7) / 8; k++)
            memcpy(v + 8 * k, spread + src->data[start / 8 + k], 8);
    } else {
        return src->data + start;
    }
    return v;
}

/* Each block's fields are unpacked into their own byte blocks, then every word is made in one
 * pass (three fields: one store per word where a pass per field stored once and OR-ed twice);
 * fields past the third are OR-ed in by further passes. A bfloat16 join (pack4 exponents, packed
 * signs, bits7 mantissas) of 131 MB by one thread: 64 ms with a pass per field shifted in 32-bit
 * lanes, 43 with the 16-bit multiply, 40 fused (the words, stored once, are then what it waits for). */
#define MH_JOIN(T)                                                                         \
    MH_CLONES static void join_##T(mh_source *src, size_t n, int nfields, const int *shifts, \
                         const int *widths, T *restrict out, const uint64_t *spread) {     \
        uint8_t blocks[3][MH_JOIN_BLOCK];                                                  \
        T k[MH_MAX_FIELDS];                                                                \
        for (int f = 0; f < nfields; f++) k[f] = (T)((T)1 << shifts[f]);                   \
        for (size_t start = 0; start < n; start += MH_JOIN_BLOCK) {                        \
            size_t stop = start + MH_JOIN_BLOCK < n ? start + MH_JOIN_BLOCK : n, m = stop - start; \
            T *restrict o = out + start;                                                   \
            const uint8_t *restrict a = field_block(&src[0], n, widths[0], start, stop, blocks[0], spread); \
            const T ka = k[0];                                                             \
            const int sa = shifts[0];                                                      \
            if (nfields == 1) {                                                            \
                for (size_t i = 0; i < m; i++) o[i] = MH_PLACE(T, a[i], sa, ka);           \
                continue;                                                                  \
            }                                                                              \
            const uint8_t *restrict b = field_block(&src[1], n, widths[1], start, stop, blocks[1], spread); \
            const T kb = k[1];                                                             \
            const int sb = shifts[1];                                                      \
            if (nfields == 2) {                                                            \
                for (size_t i = 0; i < m; i++)                                             \
                    o[i] = (T)(MH_PLACE(T, a[i], sa, ka) | MH_PLACE(T, b[i], sb, kb));     \
                continue;                                                                  \
            }                                                                              \
            const uint8_t *restrict c = field_block(&src[2], n, widths[2], start, stop, blocks[2], spread); \
            const T kc = k[2];                                                             \
            const int sc = shifts[2];                                                      \
            for (size_t i = 0; i < m; i++)                                                 \
                o[i] = (T)(MH_PLACE(T, a[i], sa, ka) | MH_PLACE(T, b[i], sb, kb)           \
                           | MH_PLACE(T, c[i], sc, kc));                                   \
            for (int f = 3; f < nfields; f++) {                                            \
                const uint8_t *restrict g = field_block(&src[f], n, widths[f], start, stop, blocks[0], spread); \
                const T kf = k[f];                                                         \
                const int s = shifts[f];                                                   \
                for (size_t i = 0; i < m; i++) o[i] |= MH_PLACE(T, g[i], s, kf);           \
            }                                                                              \
        }                                                                                  \
    }

MH_SPLIT(uint8_t)
MH_SPLIT(uint16_t)
MH_SPLIT(uint32_t)
MH_SPLIT(uint64_t)
MH_JOIN(uint8_t)
MH_JOIN(uint16_t)
MH_JOIN(uint32_t)
MH_JOIN(uint64_t)

/* The fields of n words (aligned to their size): a field of width 1 as packed bits (element i at
 * bit i % 8 of byte i / 8, the padding bits 0), any other as one byte per element. Returns 0, or
 * -1 for an unsupported word size or field count. */
int mh_split_fields(const void *words, size_t n, int itemsize, int nfields,
                    const int *shifts, const int *widths, uint8_t *const *outs) {
    if (nfields < 1 || nfields > MH_MAX_FIELDS) return -1;
    switch (itemsize) {
    case 1: split_uint8_t(words, n, nfields, shifts, widths, outs); return 0;
    case 2: split_uint16_t(words, n, nfields, shifts, widths, outs); return 0;
    case 4: split_uint32_t(words, n, nfields, shifts, widths, outs); return 0;
    case 8: split_uint64_t(words, n, nfields, shifts, widths, outs); return 0;
    default: return -1;
    }
}

static int join_sources(mh_source *src, size_t n, int itemsize, int nfields, const int *shifts,
                        const int *widths, void *out) {
    if (nfields < 1 || nfields > MH_MAX_FIELDS) return -1;
    int stray = 0;
    for (int f = 0; f < nfields; f++) {
        src[f].found = 0;
        if (src[f].kind == MH_SRC_PACKED && src[f].bits != 2 && src[f].bits != 4) return -1;
        if (src[f].kind == MH_SRC_BITS7) {   /* top bits past the tail's planes must be 0 */
            size_t t = n / 8;
            for (size_t i = 7 * t; i < n - t; i++)
                if (src[f].data[i] & 0x80) { src[f].found = 1; stray = 1; break; }
        }
    }
    if (stray) return -2;
    uint64_t spread[256];   /* byte b -> bit j of b in byte j */
    for (int b = 0; b < 256; b++) {
        uint64_t x = 0;
        for (int j = 0; j < 8; j++) x |= (uint64_t)((b >> j) & 1) << (8 * j);
        spread[b] = x;
    }
    switch (itemsize) {
    case 1: join_uint8_t(src, n, nfields, shifts, widths, out, spread); return 0;
    case 2: join_uint16_t(src, n, nfields, shifts, widths, out, spread); return 0;
    case 4: join_uint32_t(src, n, nfields, shifts, widths, out, spread); return 0;
    case 8: join_uint64_t(src, n, nfields, shifts, widths, out, spread); return 0;
    default: return -1;
    }
}

/* The inverse: n words from their fields. Field bytes are OR-ed in unmasked and bits shifted
 * past the word fall off, exactly as join_fields does in numpy (a damaged segment then decodes
 * to the same wrong words either way, and the tensor hash catches it). */
int mh_join_fields(const uint8_t *const *segs, size_t n, int itemsize, int nfields,
                   const int *shifts, const int *widths, void *out) {
    if (nfields < 1 || nfields > MH_MAX_FIELDS) return -1;
    mh_source src[MH_MAX_FIELDS];
    memset(src, 0, sizeof(src));
    for (int f = 0; f < nfields; f++) {
        src[f].data = segs[f];
        src[f].kind = MH_SRC_FIELD;
    }
    return join_sources(src, n, itemsize, nfields, shifts, widths, out);
}

/* The same from each field's stored coding (mh_source): the words join_fields makes of the planes
 * planepack.decode_packed and bits7.decode_bits7 return. Returns 0; -1 for an unsupported word size,
 * field count or code width; -2 when a bits7 field has a stray top bit (its found is 1; nothing
 * useful was written). A packed field's found counts the escape codes met: the words are right only
 * where it equals its n_escapes (the caller checks, as decode_packed does; escapes past the stored
 * ones are never read). Each field's data holds what its coding needs for n elements (checked by
 * the caller). */
int mh_join_sources(mh_source *src, size_t n, int itemsize, int nfields, const int *shifts,
                    const int *widths, void *out) {
    return join_sources(src, n, itemsize, nfields, shifts, widths, out);
}

/* Pack a plane to bits-bit codes (bits 2 or 4) in the window starting at lo: code c < 2^bits-1
 * stands for (lo + c) mod 256, the code 2^bits-1 for an escape, whose byte goes to escapes (in
 * element order). packed holds ceil(n * bits / 8) bytes; the padding codes are 0. Returns the
 * number of escapes.
 *
 * Block by block: the codes (a clamp, vectorized), then the rare escapes found 8 codes at a time
 * (code + 1 carries into bit `bits` of its byte only for the escape code), then the codes
 * shifted together. One loop doing all three per element ran 3x slower. */
#define MH_PACK_BLOCK 4096
MH_CLONES size_t mh_pack_plane(const uint8_t *plane, size_t n, int bits, uint8_t lo,
                     uint8_t *packed, uint8_t *escapes) {
    const uint8_t esc = (uint8_t)((1u << bits) - 1u);
    const int per = 8 / bits;
    const uint64_t ones = 0x0101010101010101ULL, carry = ones << bits;
    uint8_t codes[MH_PACK_BLOCK];
    size_t n_esc = 0;
    for (size_t start = 0; start < n; start += MH_PACK_BLOCK) {
        size_t m = n - start < MH_PACK_BLOCK ? n - start : MH_PACK_BLOCK;
        const uint8_t *v = plane + start;
        for (size_t i = 0; i < m; i++) {
            uint8_t c = (uint8_t)(v[i] - lo);
            codes[i] = c < esc ? c : esc;
        }
        size_t padded = (m + 7) / 8 * 8;
        for (size_t i = m; i < padded; i++) codes[i] = 0;   /* padding codes (never escapes) */
        for (size_t i = 0; i < padded; i += 8) {
            uint64_t x;
            memcpy(&x, codes + i, 8);
            if ((x + ones) & carry) {
                for (size_t j = i; j < i + 8; j++)
                    if (codes[j] == esc) escapes[n_esc++] = v[j];
            }
        }
        uint8_t *o = packed + start / (size_t)per;   /* start is a multiple of 8 */
        size_t groups = (m + (size_t)per - 1) / (size_t)per;
        if (bits == 4) {
            for (size_t k = 0; k < groups; k++) o[k] = (uint8_t)(codes[2 * k] | (codes[2 * k + 1] << 4));
        } else {
            for (size_t k = 0; k < groups; k++)
                o[k] = (uint8_t)(codes[4 * k] | (codes[4 * k + 1] << 2) | (codes[4 * k + 2] << 4) | (codes[4 * k + 3] << 6));
        }
    }
    return n_esc;
}

/* The inverse, for the first n codes (packed_block above, over the whole plane). Returns how many
 * of them are escape codes; the caller checks that it is n_escapes (a damaged blob: nothing is
 * read past escapes[n_escapes - 1]). */
MH_CLONES size_t mh_unpack_plane(const uint8_t *packed, size_t n, int bits, uint8_t lo,
                       const uint8_t *escapes, size_t n_escapes, uint8_t *out) {
    mh_source src = {packed, escapes, n_escapes, 0, MH_SRC_PACKED, bits, lo};
    packed_block(&src, 0, n, out);   /* the whole plane as one block */
    return src.found;
}

/* The inverse of bits7_gather: bit b of each of the t tail elements into the top bit of plane b's
 * bytes (a select, vectorized, like the gather). */
static inline void bits7_scatter(const uint8_t *restrict tail, size_t t, uint8_t *restrict out) {
    for (size_t start = 0; start < t; start += MH_BLOCK) {   /* the tail's block stays in cache */
        const size_t m = t - start < MH_BLOCK ? t - start : MH_BLOCK;
        for (int b = 0; b < 7; b++) {
            uint8_t *restrict o = out + (size_t)b * t + start;
            const uint8_t *restrict s = tail + start;
            const uint8_t bit = (uint8_t)(1u << b);
            for (size_t i = 0; i < m; i++) o[i] |= (s[i] & bit) ? 0x80 : 0;
        }
    }
}

/* bits7 (layout in storage/bits7.py): returns 0, or -1 when a value is 128 or more. */
MH_CLONES int mh_bits7_encode(const uint8_t *v, size_t n, uint8_t *out) {
    size_t t = n / 8, head = n - t;
    uint8_t any = 0;
    for (size_t i = 0; i < n; i++) any |= v[i];
    if (any & 0x80) return -1;
    if (out != v) memcpy(out, v, head);   /* out == v: encoded in place (the tail is only read) */
    /* Plane b is written over bytes [b*t, (b+1)*t), below head: never over the tail it reads, so
     * the two pointers may be declared apart even in place (bits7_scatter). */
    bits7_scatter(v + head, t, out);
    return 0;
}

/* Returns 0, or -1 when a top bit past the tail's planes is set (a damaged blob). */
MH_CLONES int mh_bits7_decode(const uint8_t *p, size_t n, uint8_t *out) {
    size_t t = n / 8, head = n - t;
    for (size_t i = 7 * t; i < head; i++)
        if (p[i] & 0x80) return -1;
    for (size_t i = 0; i < head; i++) out[i] = p[i] & 0x7F;
    for (size_t i = 0; i < t; i += MH_BLOCK)   /* a block of the tail at a time: it stays in cache */
        bits7_gather(p + i, t, t - i < MH_BLOCK ? t - i : MH_BLOCK, out + head + i);
    return 0;
}

/* setuptools builds this file as an extension module and links it with this symbol exported;
 * modelhub never imports it as a module (storage/kernels.py loads it with ctypes). */
void *PyInit__kernels(void) { return 0; }

/* -- deltas (storage/deltas.py, storage/byteclass.py) ------------------------------------------ */

/* The delta undone in place, word by word against the base: op 0 xor, 1 osub (zigzag of the
 * difference of the order-preserving maps of the floats), 2 sub (zigzag of the wrapping
 * difference). Exactly deltas.undo_delta. A zero delta gives the base back under every op. */
#define MH_UNDO(T, BITS)                                                                   \
    MH_CLONES static void undo_##T(const T *restrict base, size_t n, int op, T *restrict out) { \
        const T magnitude = (T)(((T)1 << (BITS - 1)) - 1);                                  \
        if (op == 0) {                                                                     \
            for (size_t i = 0; i < n; i++) out[i] ^= base[i];                              \
        } else if (op == 1) {                                                              \
            for (size_t i = 0; i < n; i++) {                                               \
                const T z = out[i], b = base[i];                                           \
                const T d = (T)((z >> 1) ^ (T)(0 - (z & 1)));                               \
                const T ob = b ^ ((T)(0 - (b >> (BITS - 1))) & magnitude);                 \
                const T ox = (T)(d + ob);                                                  \
                out[i] = ox ^ ((T)(0 - (ox >> (BITS - 1))) & magnitude);                   \
            }                                                                              \
        } else {                                                                           \
            for (size_t i = 0; i < n; i++) {                                               \
                const T z = out[i];                                                        \
                out[i] = (T)(((z >> 1) ^ (T)(0 - (z & 1))) + base[i]);                      \
            }                                                                              \
        }                                                                                  \
    }

MH_UNDO(uint8_t, 8)
MH_UNDO(uint16_t, 16)
MH_UNDO(uint32_t, 32)
MH_UNDO(uint64_t, 64)

int mh_undo_delta(const void *base, size_t n, int itemsize, int op, void *out) {
    if (op < 0 || op > 2) return -3;
    switch (itemsize) {
    case 1: undo_uint8_t(base, n, op, out); return 0;
    case 2: undo_uint16_t(base, n, op, out); return 0;
    case 4: undo_uint32_t(base, n, op, out); return 0;
    case 8: undo_uint64_t(base, n, op, out); return 0;
    }
    return -2;
}

/* Words from byte-class segments: counts[i] is element i's number of significant bytes; for byte
 * k, from the most significant down, segs[2 * (size - 1 - k)] holds the bytes of the elements
 * whose top significant byte is k (count k + 1) and segs[2 * (size - 1 - k) + 1] those of the
 * elements with more (count > k + 1), both in element order. Exactly byteclass.join_byteclass;
 * the caller has checked every count <= size and every segment's length. Without branches: an
 * element takes its byte k from one of the two cursors or from a zero, and only that cursor
 * advances. */
static const uint8_t mh_zero_byte = 0;

/* Byte k's two cursors: segs[2 * (S - 1 - k)] its lead bytes, the next one the rest. */
#define MH_BYTECLASS_CURSORS(S, segs, lead, rest)                                          \
    for (int k = 0; k < (S); k++) {                                                        \
        (lead)[k] = (segs)[2 * ((S) - 1 - k)];                                             \
        (rest)[k] = (segs)[2 * ((S) - 1 - k) + 1];                                         \
    }

/* One function per word size: the loop over the bytes unrolls and every cursor stays in a
 * register (with the size a variable they lived on the stack, ~3x slower). */
#define MH_BYTECLASS(S)                                                                    \
    MH_CLONES static void byteclass_##S(const uint8_t *restrict counts, size_t n,          \
                                        const uint8_t *const *segs, uint8_t *restrict out) { \
        const uint8_t *lead[S], *rest[S];                                                  \
        MH_BYTECLASS_CURSORS(S, segs, lead, rest);                                         \
        for (size_t i = 0; i < n; i++) {                                                   \
            const int c = counts[i];                                                       \
            for (int k = 0; k < S; k++) {                                                  \
                const int is_lead = c == k + 1, is_rest = c > k + 1;                       \
                const uint8_t *from = is_lead ? lead[k] : is_rest ? rest[k] : &mh_zero_byte; \
                out[i * S + k] = *from;                                                    \
                lead[k] += is_lead;                                                        \
                rest[k] += is_rest;                                                        \
            }                                                                              \
        }                                                                                  \
    }

MH_BYTECLASS(1)
MH_BYTECLASS(2)
MH_BYTECLASS(4)
MH_BYTECLASS(8)

int mh_byteclass_join(const uint8_t *counts, size_t n, int size, const uint8_t *const *segs, uint8_t *out) {
    switch (size) {
    case 1: byteclass_1(counts, n, segs, out); return 0;
    case 2: byteclass_2(counts, n, segs, out); return 0;
    case 4: byteclass_4(counts, n, segs, out); return 0;
    case 8: byteclass_8(counts, n, segs, out); return 0;
    }
    return -2;
}

/* The inverse, byteclass.split_byteclass's segments from the words (n of S bytes) and their
 * counts: each element's byte k goes to the lead or the rest cursor of byte k, or nowhere. Without
 * branches: the byte is stored at both cursors and only the one it belongs to advances (the next
 * element overwrites the other store), so every segment needs one writable byte past its end. The
 * numpy split (a boolean mask and a gather per segment) was 2/3 of a delta's order-0 estimate. */
#define MH_BYTECLASS_SPLIT(S)                                                              \
    MH_CLONES static void byteclass_split_##S(const uint8_t *restrict words, const uint8_t *restrict counts, \
                                              size_t n, uint8_t *const *segs) {            \
        uint8_t *lead[S], *rest[S];                                                        \
        MH_BYTECLASS_CURSORS(S, segs, lead, rest);                                         \
        for (size_t i = 0; i < n; i++) {                                                   \
            const int c = counts[i];                                                       \
            for (int k = 0; k < S; k++) {                                                  \
                const uint8_t b = words[i * S + k];                                        \
                *lead[k] = b;                                                              \
                *rest[k] = b;                                                              \
                lead[k] += c == k + 1;                                                     \
                rest[k] += c > k + 1;                                                      \
            }                                                                              \
        }                                                                                  \
    }

MH_BYTECLASS_SPLIT(1)
MH_BYTECLASS_SPLIT(2)
MH_BYTECLASS_SPLIT(4)
MH_BYTECLASS_SPLIT(8)

int mh_byteclass_split(const uint8_t *words, const uint8_t *counts, size_t n, int size, uint8_t *const *segs) {
    switch (size) {
    case 1: byteclass_split_1(words, counts, n, segs); return 0;
    case 2: byteclass_split_2(words, counts, n, segs); return 0;
    case 4: byteclass_split_4(words, counts, n, segs); return 0;
    case 8: byteclass_split_8(words, counts, n, segs); return 0;
    }
    return -2;
}

/* Histogram of n bytes (hist: 256 int64), from four partial histograms summed at the end:
 * neighbouring bytes are often equal, and one histogram would make each increment wait for the
 * previous one's store. numpy's bincount converts every byte to int64 first (~4 ns per byte). */
MH_CLONES void mh_byte_histogram(const uint8_t *restrict data, size_t n, int64_t *restrict hist) {
    int64_t part[4][256];
    memset(part, 0, sizeof part);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        part[0][data[i]]++;
        part[1][data[i + 1]]++;
        part[2][data[i + 2]]++;
        part[3][data[i + 3]]++;
    }
    for (; i < n; i++) part[0][data[i]]++;
    for (int b = 0; b < 256; b++) hist[b] = part[0][b] + part[1][b] + part[2][b] + part[3][b];
}
