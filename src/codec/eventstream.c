/* AWS event-stream codec (see eventstream.h). Error texts follow aws-sdk-go's, which the
 * shared test vectors name ("Prelude checksum mismatch", "Message checksum mismatch"). */
#include "codec/eventstream.h"
#include "core/err.h"

#include <stdbool.h>
#include <string.h>

#define PRELUDE 12
#define MIN_MSG 16

static uint32_t crc_table[8][256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_CLMUL_PATH 1

/* CRC-32 of len bytes (len >= 64, a multiple of 16) by carry-less multiplication folding:
 * "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ Instruction" (Gopal, Ozturk
 * et al., Intel, 2009), constants for the bit-reflected IEEE polynomial as in Chromium's
 * zlib (crc32_simd.c). crc is the running (inverted) state; returns the new one. About 3x
 * the table's speed on an event-stream message of a few hundred bytes. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc_clmul(const unsigned char *buf,
                                                                   size_t len, uint32_t crc)
{
    static const uint64_t __attribute__((aligned(16))) k1k2[] = {0x0154442bd4, 0x01c6e41596};
    static const uint64_t __attribute__((aligned(16))) k3k4[] = {0x01751997d0, 0x00ccaa009e};
    static const uint64_t __attribute__((aligned(16))) k5k0[] = {0x0163cd6124, 0x0000000000};
    static const uint64_t __attribute__((aligned(16))) poly[] = {0x01db710641, 0x01f7011641};
    __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8, y5, y6, y7, y8;
    x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
    x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
    x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
    x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    x0 = _mm_load_si128((const __m128i *)k1k2);
    buf += 64;
    len -= 64;
    while (len >= 64) {
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
        x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
        x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
        x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
        x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
        y5 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
        y6 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
        y7 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
        y8 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), y5);
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), y6);
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), y7);
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), y8);
        buf += 64;
        len -= 64;
    }
    x0 = _mm_load_si128((const __m128i *)k3k4);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    while (len >= 16) {
        x2 = _mm_loadu_si128((const __m128i *)buf);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
        buf += 16;
        len -= 16;
    }
    x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
    x3 = _mm_setr_epi32(~0, 0, ~0, 0);
    x1 = _mm_srli_si128(x1, 8);
    x1 = _mm_xor_si128(x1, x2);
    x0 = _mm_loadl_epi64((const __m128i *)k5k0);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, x3);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    x0 = _mm_load_si128((const __m128i *)poly);
    x2 = _mm_and_si128(x1, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
    x2 = _mm_and_si128(x2, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

static bool clmul_ok(void)
{
    return __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
}
#endif

uint32_t cmx_crc32(uint32_t crc, const void *p, size_t n)
{
    static int ready; /* benign race: every thread computes the same table and answer */
    static bool clmul;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        crc_init();
#ifdef HAVE_CLMUL_PATH
        clmul = clmul_ok();
#endif
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    const unsigned char *s = p;
    crc = ~crc;
#ifdef HAVE_CLMUL_PATH
    if (clmul && n >= 64) {
        size_t c = n & ~(size_t)15;
        crc = crc_clmul(s, c, crc);
        s += c;
        n -= c;
    }
#else
    (void)clmul;
#endif
    /* slicing-by-8 */
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 |
                             (uint32_t)s[3] << 24);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][s[4]] ^
              crc_table[2][s[5]] ^ crc_table[1][s[6]] ^ crc_table[0][s[7]];
        s += 8;
        n -= 8;
    }
    while (n--)
        crc = crc_table[0][(crc ^ *s++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const unsigned char *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static int parse_headers(const unsigned char *h, size_t len, struct cmx_es_message *m,
                         const char **why)
{
    size_t i = 0;
    m->n_headers = 0;
    while (i < len) {
        if (m->n_headers >= CMX_ES_MAX_HEADERS) {
            *why = "Too many headers";
            return CMX_EUPSTREAM;
        }
        struct cmx_es_header *x = &m->headers[m->n_headers];
        size_t nl = h[i++];
        if (nl == 0 || i + nl + 1 > len) {
            *why = "Malformed header name";
            return CMX_EUPSTREAM;
        }
        x->name = (const char *)h + i;
        x->name_len = nl;
        i += nl;
        unsigned t = h[i++];
        x->type = (enum cmx_es_type)t;
        x->data = NULL;
        x->len = 0;
        x->num = 0;
        size_t need;
        switch (t) {
        case CMX_ES_BOOL_TRUE:
        case CMX_ES_BOOL_FALSE:
            x->num = t == CMX_ES_BOOL_TRUE;
            need = 0;
            break;
        case CMX_ES_BYTE:
            need = 1;
            break;
        case CMX_ES_INT16:
            need = 2;
            break;
        case CMX_ES_INT32:
            need = 4;
            break;
        case CMX_ES_INT64:
        case CMX_ES_TIMESTAMP:
            need = 8;
            break;
        case CMX_ES_UUID:
            need = 16;
            break;
        case CMX_ES_BYTES:
        case CMX_ES_STRING:
            if (i + 2 > len) {
                *why = "Malformed header value";
                return CMX_EUPSTREAM;
            }
            need = (size_t)h[i] << 8 | h[i + 1];
            i += 2;
            break;
        default:
            *why = "Unknown header value type";
            return CMX_EUPSTREAM;
        }
        if (i + need > len) {
            *why = "Malformed header value";
            return CMX_EUPSTREAM;
        }
        switch (t) {
        case CMX_ES_BYTE:
            x->num = (int8_t)h[i];
            break;
        case CMX_ES_INT16:
            x->num = (int16_t)(uint16_t)((unsigned)h[i] << 8 | h[i + 1]);
            break;
        case CMX_ES_INT32:
            x->num = (int32_t)be32(h + i);
            break;
        case CMX_ES_INT64:
        case CMX_ES_TIMESTAMP:
            x->num = (int64_t)be64(h + i);
            break;
        case CMX_ES_BYTES:
        case CMX_ES_STRING:
        case CMX_ES_UUID:
            x->data = (const char *)h + i;
            x->len = need;
            break;
        default:
            break;
        }
        i += need;
        m->n_headers++;
    }
    return 0;
}

/* Checks the prelude of a message whose first 12 bytes are at p. */
static int check_prelude(const unsigned char *p, size_t max, uint32_t *total, const char **why)
{
    uint32_t t = be32(p), hl = be32(p + 4);
    if (cmx_crc32(0, p, 8) != be32(p + 8)) {
        *why = "Prelude checksum mismatch";
        return CMX_EUPSTREAM;
    }
    if (t < MIN_MSG || t > max || hl > t - MIN_MSG) {
        *why = "Invalid message length";
        return CMX_EUPSTREAM;
    }
    *total = t;
    return 0;
}

int cmx_es_decode_one(const char *buf, size_t len, struct cmx_es_message *m, const char **why)
{
    const unsigned char *p = (const unsigned char *)buf;
    uint32_t total;
    if (len < MIN_MSG) {
        *why = "Truncated message";
        return CMX_EUPSTREAM;
    }
    int r = check_prelude(p, len, &total, why);
    if (r != 0)
        return r;
    if (total != len) {
        *why = "Invalid message length";
        return CMX_EUPSTREAM;
    }
    uint32_t crc = be32(p + total - 4);
    if (cmx_crc32(0, p, total - 4) != crc) {
        *why = "Message checksum mismatch";
        return CMX_EUPSTREAM;
    }
    m->total_len = total;
    m->headers_len = be32(p + 4);
    m->prelude_crc = be32(p + 8);
    m->message_crc = crc;
    r = parse_headers(p + PRELUDE, m->headers_len, m, why);
    if (r != 0)
        return r;
    m->payload = buf + PRELUDE + m->headers_len;
    m->payload_len = total - MIN_MSG - m->headers_len;
    return 0;
}

void cmx_es_decoder_init(struct cmx_es_decoder *d, size_t max_message)
{
    d->max_message = max_message ? max_message : CMX_ES_MAX_MESSAGE;
    cmx_buf_init(&d->partial, d->max_message);
    d->error = NULL;
}

void cmx_es_decoder_free(struct cmx_es_decoder *d)
{
    cmx_buf_free(&d->partial);
}

static int deliver(struct cmx_es_decoder *d, const char *p, size_t len, cmx_es_message_cb cb,
                   void *ud)
{
    struct cmx_es_message m;
    const char *why = NULL;
    if (cmx_es_decode_one(p, len, &m, &why) != 0) {
        d->error = why;
        return CMX_EUPSTREAM;
    }
    return cb(ud, &m);
}

int cmx_es_feed(struct cmx_es_decoder *d, const char *data, size_t len, cmx_es_message_cb cb,
                void *ud)
{
    uint32_t total;
    int r;
    if (d->error != NULL)
        return CMX_EUPSTREAM;
    /* finish a message started in an earlier read */
    while (d->partial.len > 0 && len > 0) {
        size_t need;
        if (d->partial.len < PRELUDE) {
            need = PRELUDE - d->partial.len;
        } else {
            if ((r = check_prelude((const unsigned char *)d->partial.data, d->max_message, &total,
                                   &d->error)) != 0)
                return r;
            need = total - d->partial.len;
        }
        size_t take = need < len ? need : len;
        if ((r = cmx_buf_append(&d->partial, data, take)) != 0)
            return r;
        data += take;
        len -= take;
        if (d->partial.len >= PRELUDE) {
            if ((r = check_prelude((const unsigned char *)d->partial.data, d->max_message, &total,
                                   &d->error)) != 0)
                return r;
            if (d->partial.len == total) {
                r = deliver(d, d->partial.data, total, cb, ud);
                cmx_buf_reset(&d->partial);
                if (r != 0)
                    return r;
            }
        }
    }
    /* whole messages straight from the caller's buffer */
    while (len >= PRELUDE) {
        if ((r = check_prelude((const unsigned char *)data, d->max_message, &total, &d->error)) !=
            0)
            return r;
        if (len < total)
            break;
        if ((r = deliver(d, data, total, cb, ud)) != 0)
            return r;
        data += total;
        len -= total;
    }
    if (len > 0 && (r = cmx_buf_append(&d->partial, data, len)) != 0)
        return r;
    return 0;
}

int cmx_es_finish(struct cmx_es_decoder *d)
{
    if (d->error != NULL)
        return CMX_EUPSTREAM;
    if (d->partial.len > 0) {
        d->error = "Truncated message";
        return CMX_EUPSTREAM;
    }
    return 0;
}

const struct cmx_es_header *cmx_es_find(const struct cmx_es_message *m, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < m->n_headers; i++)
        if (m->headers[i].name_len == nl && memcmp(m->headers[i].name, name, nl) == 0)
            return &m->headers[i];
    return NULL;
}

bool cmx_es_header_is(const struct cmx_es_header *h, const char *s)
{
    size_t n = strlen(s);
    return h != NULL && h->type == CMX_ES_STRING && h->len == n && memcmp(h->data, s, n) == 0;
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

int cmx_es_encode(struct cmx_buf *out, const struct cmx_es_header *h, size_t n, const void *payload,
                  size_t payload_len)
{
    static const unsigned char width[] = {0, 0, 1, 2, 4, 8, 0, 0, 8, 16};
    size_t hl = 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i].name_len == 0 || h[i].name_len > 255 || (unsigned)h[i].type > 9)
            return CMX_EINVAL;
        hl += 2 + h[i].name_len;
        if (h[i].type == CMX_ES_BYTES || h[i].type == CMX_ES_STRING) {
            if (h[i].len > 65535)
                return CMX_EINVAL;
            hl += 2 + h[i].len;
        } else {
            hl += width[h[i].type];
        }
    }
    size_t total = MIN_MSG + hl + payload_len;
    if (total > UINT32_MAX)
        return CMX_EINVAL;
    unsigned char *w = (unsigned char *)cmx_buf_reserve(out, total);
    if (w == NULL)
        return out->len + total > out->max ? CMX_ETOOBIG : CMX_ENOMEM;
    put32(w, (uint32_t)total);
    put32(w + 4, (uint32_t)hl);
    put32(w + 8, cmx_crc32(0, w, 8));
    size_t o = PRELUDE;
    for (size_t i = 0; i < n; i++) {
        w[o++] = (unsigned char)h[i].name_len;
        memcpy(w + o, h[i].name, h[i].name_len);
        o += h[i].name_len;
        w[o++] = (unsigned char)h[i].type;
        uint64_t v = (uint64_t)h[i].num;
        switch (h[i].type) {
        case CMX_ES_BYTE:
            w[o++] = (unsigned char)v;
            break;
        case CMX_ES_INT16:
            w[o++] = (unsigned char)(v >> 8);
            w[o++] = (unsigned char)v;
            break;
        case CMX_ES_INT32:
            put32(w + o, (uint32_t)v);
            o += 4;
            break;
        case CMX_ES_INT64:
        case CMX_ES_TIMESTAMP:
            put32(w + o, (uint32_t)(v >> 32));
            put32(w + o + 4, (uint32_t)v);
            o += 8;
            break;
        case CMX_ES_BYTES:
        case CMX_ES_STRING:
            w[o++] = (unsigned char)(h[i].len >> 8);
            w[o++] = (unsigned char)h[i].len;
            memcpy(w + o, h[i].data, h[i].len);
            o += h[i].len;
            break;
        case CMX_ES_UUID:
            memcpy(w + o, h[i].data, 16);
            o += 16;
            break;
        default:
            break;
        }
    }
    if (payload_len > 0)
        memcpy(w + o, payload, payload_len);
    o += payload_len;
    put32(w + o, cmx_crc32(0, w, o));
    cmx_buf_commit(out, total);
    return 0;
}
