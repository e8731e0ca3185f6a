/* Static order-0 rANS for the context coder's symbol streams (storage/rans.py has the format,
 * the table coding and the pure-Python reference these functions must match byte for byte).
 *
 * Why rANS and not zstd's Huffman: a Huffman code spends a whole number of bits per symbol, and a
 * zstd frame pays ~9 bytes of framing plus its table per stream; the context coder's streams are
 * short (median ~4k symbols) and skewed, where both show (measured on the EfficientNet-Lite0
 * fine-tune trajectory: zstd's frames were 2.1% above the streams' order-0 entropy).
 *
 * The coder (after Duda; the layout of Giesen's ryg_rans "word" variant): 32-bit states in
 * [2^16, 2^32), 16-bit renormalization (at most one 16-bit word per symbol, so the decoder has no
 * inner loop), four interleaved states (symbol i uses state i % 4: four independent dependency
 * chains for the processor). The encoder runs backwards and writes backwards, so the decoder reads
 * forwards: four u32 states, then the u16 words. The encoder starts every state at 2^16; a decoder
 * that ends anywhere else, or leaves a word unread, was handed damaged input.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RANS_L (1u << 16)
#define MIN_SCALE 8
#define MAX_SCALE 12   /* the decoder's symbol table (2^12 bytes) stays in L1 */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MH_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define MH_CLONES
#endif

static inline int leading_zeros64(uint64_t v)   /* v != 0 */
{
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_clzll(v);
#else
    int n = 0;
    while (!(v >> 63)) {
        v <<= 1;
        n++;
    }
    return n;
#endif
}

static inline uint32_t load32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }   /* little-endian hosts only (setup.py) */
static inline uint16_t load16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline void store32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void store16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* start[s] = sum of freq below s; -1 unless the frequencies sum to exactly 2^scale. */
static int cumulate(const uint32_t *freq, int scale, uint32_t *start)
{
    uint32_t total = 0;
    for (int s = 0; s < 256; s++) {
        if (freq[s] > (1u << scale))
            return -1;
        start[s] = total;
        total += freq[s];
    }
    return total == (1u << scale) ? 0 : -1;
}

/* The payload of n symbols, written at the end of dst[0..cap): returns its length, -1 for a bad
 * table or a symbol without frequency, -2 for a buffer too small (cap >= 2n + 16 always suffices). */
int64_t mh_rans_encode(const uint8_t *src, size_t n, const uint32_t *freq, int scale, uint8_t *dst, size_t cap)
{
    uint32_t start[256];
    if (scale < MIN_SCALE || scale > MAX_SCALE || cumulate(freq, scale, start) != 0)
        return -1;
    if (cap < 2 * n + 16)
        return -2;
    uint32_t x[4] = {RANS_L, RANS_L, RANS_L, RANS_L};
    uint8_t *p = dst + cap;
    for (size_t i = n; i-- > 0;) {
        uint8_t s = src[i];
        uint32_t f = freq[s], v = x[i & 3];
        if (f == 0)
            return -1;
        if ((uint64_t)v >= ((uint64_t)f << (32 - scale))) {
            p -= 2;
            store16(p, (uint16_t)v);
            v >>= 16;
        }
        x[i & 3] = ((v / f) << scale) + (v % f) + start[s];
    }
    p -= 16;
    for (int k = 0; k < 4; k++)
        store32(p + 4 * k, x[k]);
    return (int64_t)(dst + cap - p);
}

/* One symbol of state x. The checked step tests the bound before a read; the fast step reads
 * without a branch (renormalizing costs a mispredicted branch every other symbol on skewed streams,
 * ~2x the whole step), and runs only while 8 bytes (four steps' words at most) remain. */
#define STEP_CHECKED(x, i)                                                  \
    do {                                                                    \
        uint32_t slot_ = (x) & mask, s_ = sym[slot_];                       \
        out[i] = (uint8_t)s_;                                               \
        (x) = freq[s_] * ((x) >> scale) + slot_ - start[s_];                \
        if ((x) < RANS_L) {                                                 \
            if (end - p < 2)                                                \
                return -1;                                                  \
            (x) = ((x) << 16) | load16(p);                                  \
            p += 2;                                                         \
        }                                                                   \
    } while (0)

#define STEP_FAST(x, i)                                                     \
    do {                                                                    \
        uint32_t slot_ = (x) & mask, s_ = sym[slot_];                       \
        out[i] = (uint8_t)s_;                                               \
        (x) = freq[s_] * ((x) >> scale) + slot_ - start[s_];                \
        uint32_t need_ = (x) < RANS_L, word_ = load16(p);                   \
        (x) = ((x) << (need_ << 4)) | (word_ & (0u - need_));               \
        p += 2 * need_;                                                     \
    } while (0)

/* The stream's header and table (storage/rans.py: u8 scale, u8 last, Elias-gamma codes of freq + 1
 * for symbols 0..last, MSB first, padded to a byte): the bytes they take, or -1 where damaged.
 * Codes are read from a 64-bit window by counting its leading zeros: reading bit by bit was 12% of
 * decoding the EfficientNet-Lite0 fine-tune's 1,066 streams (median 4,430 symbols each). */
static int64_t read_table(const uint8_t *in, size_t len, uint32_t *freq, int *scale, int *last_symbol)
{
    if (len < 2)
        return -1;
    *scale = in[0];
    int last = in[1];
    *last_symbol = last;
    if (*scale < MIN_SCALE || *scale > MAX_SCALE)
        return -1;
    memset(freq, 0, 256 * sizeof *freq);
    const uint8_t *bits = in + 2;
    size_t nbytes = len - 2, next = 0;
    uint64_t window = 0;   /* the unread bits, MSB first; zeros below the last real bit */
    int avail = 0;         /* real bits in the window */
    for (int s = 0; s <= last; s++) {
        while (avail <= 56 && next < nbytes) {
            window |= (uint64_t)bits[next++] << (56 - avail);
            avail += 8;
        }
        /* a code's zeros are at most MAX_SCALE + 1 (frequencies are at most 2^MAX_SCALE), so it
         * takes at most 2 * 13 + 1 = 27 bits: the window, refilled to 57 bits, always holds one */
        int zeros = window ? leading_zeros64(window) : 64;
        int width = 2 * zeros + 1;
        if (zeros > MAX_SCALE + 1 || width > avail)
            return -1;
        freq[s] = (uint32_t)(window >> (64 - width)) - 1;
        window <<= width;
        avail -= width;
    }
    size_t used = 8 * next - (size_t)avail;   /* bits consumed */
    return 2 + (int64_t)((used + 7) / 8);
}

/* n symbols from a whole stream (header, table, payload): 0, or -1 where the input is damaged (a bad
 * table, a state out of range, words missing or left over, states that do not end where they began). */
MH_CLONES
int mh_rans_decode(const uint8_t *in, size_t len, uint8_t *out, size_t n)
{
    uint32_t freq[256], start[256];
    /* on the stack (4 KB): a _Thread_local table made gcc call __tls_get_addr in every round of the
     * loop below, spilling the states around the call (4.7-4.9 ns per symbol; 3.8-3.9 without, one
     * sitting, the same streams) */
    uint8_t sym[1u << MAX_SCALE];
    int scale, last;
    int64_t head = read_table(in, len, freq, &scale, &last);
    if (head < 0 || (size_t)head > len || cumulate(freq, scale, start) != 0)   /* the table lies inside the stream */
        return -1;
    in += head;
    len -= (size_t)head;
    if (len < 16 || (len & 1))
        return -1;
    for (int s = 0; s <= last; s++)   /* the symbols above ``last`` have no frequency */
        memset(sym + start[s], s, freq[s]);
    const uint32_t mask = (1u << scale) - 1;
    uint32_t x0 = load32(in), x1 = load32(in + 4), x2 = load32(in + 8), x3 = load32(in + 12);
    if (x0 < RANS_L || x1 < RANS_L || x2 < RANS_L || x3 < RANS_L)
        return -1;
    const uint8_t *p = in + 16, *end = in + len;
    size_t i = 0;
    for (; i + 4 <= n && end - p >= 8; i += 4) {
        STEP_FAST(x0, i);
        STEP_FAST(x1, i + 1);
        STEP_FAST(x2, i + 2);
        STEP_FAST(x3, i + 3);
    }
    for (; i + 4 <= n; i += 4) {
        STEP_CHECKED(x0, i);
        STEP_CHECKED(x1, i + 1);
        STEP_CHECKED(x2, i + 2);
        STEP_CHECKED(x3, i + 3);
    }
    if (i < n) STEP_CHECKED(x0, i);
    if (i + 1 < n) STEP_CHECKED(x1, i + 1);
    if (i + 2 < n) STEP_CHECKED(x2, i + 2);
    return (p == end && x0 == RANS_L && x1 == RANS_L && x2 == RANS_L && x3 == RANS_L) ? 0 : -1;
}

/* Streams of one blob (``count`` of them, each whole: header, table, payload) into one output: one
 * call per tensor's stream list instead of one per stream (a call through ctypes costs ~10 us, as
 * much as decoding a few thousand symbols). table[4k..4k+3]: where stream k starts in ``blob``, its
 * length, where its symbols go in ``out``, how many. Returns -1 when every stream decoded, else the
 * index of the first damaged one. */
int64_t mh_rans_decode_many(const uint8_t *blob, const int64_t *table, uint8_t *out, int64_t count)
{
    for (int64_t k = 0; k < count; k++) {
        const int64_t *t = table + 4 * k;
        if (mh_rans_decode(blob + t[0], (size_t)t[1], out + t[2], (size_t)t[3]) != 0)
            return k;
    }
    return -1;
}
