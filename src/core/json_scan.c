/* Validating JSON scanner (see json_scan.h). It runs on every request body, so it is a
 * single pass with no allocation and no recursion: nesting is tracked in a 128-bit stack
 * of "object or array" bits, and the bytes of strings, which make up most of a chat
 * request, are skipped 16 at a time (SSE2) or 8 at a time (SWAR fallback). */
#include "core/json_scan.h"
#include "core/fmt.h"
#include "core/err.h"

#include <stdint.h>
#include <string.h>

#if defined(__SSE2__) && !defined(CMX_JSON_NO_SIMD)
#include <emmintrin.h>
#define USE_SSE2 1
#endif

#define LIKELY(x)   __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

static inline int is_ws(unsigned c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline int is_digit(unsigned c)
{
    return c - '0' < 10u;
}

/* A byte that may appear unescaped in a string and needs no further look: printable
 * ASCII (0x7f included) other than '"' and '\\'. */
static inline int is_plain(unsigned c)
{
    return c - 0x20u < 0x60u && c != '"' && c != '\\';
}

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

/* Returns the first byte in [p, end) that is not plain (or end). */
static inline const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end)
{
#ifdef USE_SSE2
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i bslash = _mm_set1_epi8('\\');
    const __m128i ctl = _mm_set1_epi8(0x1f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* max(v, 0x1f) == 0x1f exactly for v <= 0x1f; bytes >= 0x80 carry their own high
         * bit into the movemask. */
        __m128i m = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash));
        m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_max_epu8(v, ctl), ctl));
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_or_si128(m, v));
        if (mask != 0)
            return p + __builtin_ctz(mask);
        p += 16;
    }
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Classic "has a zero / has a byte less than" tricks: borrows can only flag bytes
     * above a truly flagged one, so the lowest flagged byte is exact. */
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    while (end - p >= 8) {
        uint64_t v, q, b;
        memcpy(&v, p, 8);
        q = v ^ (ones * '"');
        b = v ^ (ones * '\\');
        uint64_t mask = ((q - ones) & ~q) | ((b - ones) & ~b) | ((v - ones * 0x20) & ~v) | v;
        mask &= highs;
        if (mask != 0)
            return p + (__builtin_ctzll(mask) >> 3);
        p += 8;
    }
#endif
    while (p < end && is_plain(*p))
        p++;
    return p;
}

const unsigned char *cmx_utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t left = (size_t)(end - p);
    unsigned lo = 0x80, hi = 0xbf;

    if (c < 0xc2)
        return NULL; /* stray continuation byte or overlong 2-byte lead */
    if (c < 0xe0) {
        if (left < 2 || (p[1] & 0xc0) != 0x80)
            return NULL;
        return p + 2;
    }
    if (c < 0xf0) {
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
        if (left < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80)
            return NULL;
        return p + 3;
    }
    if (c < 0xf5) {
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
        if (left < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return NULL;
        return p + 4;
    }
    return NULL;
}

/* Value of the four hex digits at p, or -1. */
static long hex4(const unsigned char *p)
{
    int a = cmx_hex_val(p[0]), b = cmx_hex_val(p[1]), c = cmx_hex_val(p[2]), d = cmx_hex_val(p[3]);
    if ((a | b | c | d) < 0)
        return -1;
    return (long)a << 12 | (long)b << 8 | (long)c << 4 | (long)d;
}

static inline int is_simple_escape(unsigned c)
{
    return c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
           c == 't';
}

/* p is just past an opening quote. Returns the byte after the closing quote, or NULL if
 * the string is invalid or unterminated; *escaped is set when it holds a backslash escape.
 * Lone surrogates in \u escapes are accepted here (as most parsers do);
 * cmx_json_string_decode replaces them. */
static inline const unsigned char *scan_string_esc(const unsigned char *p, const unsigned char *end,
                                                   bool *escaped)
{
    for (;;) {
        p = skip_plain(p, end);
        if (UNLIKELY(p >= end))
            return NULL;
        unsigned c = *p;
        if (LIKELY(c == '"'))
            return p + 1;
        if (c == '\\') {
            *escaped = true;
            if (end - p < 2)
                return NULL;
            c = p[1];
            if (c == 'u') {
                if (end - p < 6 || hex4(p + 2) < 0)
                    return NULL;
                p += 6;
            } else if (is_simple_escape(c)) {
                p += 2;
            } else {
                return NULL;
            }
        } else if (c >= 0x80) {
            /* Non-Latin text is mostly multi-byte runs: stay here for the whole run. */
            do {
                p = cmx_utf8_seq(p, end);
                if (p == NULL)
                    return NULL;
            } while (p < end && *p >= 0x80);
        } else {
            return NULL; /* raw control character */
        }
    }
}

/* scan_string_esc when whether the string held an escape does not matter. */
static const unsigned char *scan_string(const unsigned char *p, const unsigned char *end)
{
    bool escaped;
    return scan_string_esc(p, end, &escaped);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? of any length; p is at '-' or a digit.
 * What follows is checked by the caller's grammar, so "01" fails there. */
static const unsigned char *scan_number(const unsigned char *p, const unsigned char *end)
{
    if (*p == '-' && ++p == end)
        return NULL;
    if (*p == '0') {
        p++;
    } else if (is_digit(*p)) {
        do
            p++;
        while (p < end && is_digit(*p));
    } else {
        return NULL;
    }
    if (p < end && *p == '.') {
        if (++p == end || !is_digit(*p))
            return NULL;
        do
            p++;
        while (p < end && is_digit(*p));
    }
    if (p < end && (*p | 0x20) == 'e') {
        if (++p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p))
            return NULL;
        do
            p++;
        while (p < end && is_digit(*p));
    }
    return p;
}

/* Scans one value starting at p (not whitespace) that sits inside `depth` open
 * containers. Returns the byte after it or NULL. Iterative: one bit per open container
 * (1 = object) replaces the recursion. */
static const unsigned char *scan_value(const unsigned char *p, const unsigned char *end,
                                       unsigned depth)
{
    uint64_t stack[(CMX_JSON_MAX_DEPTH + 63) / 64] = {0};
    const unsigned base = depth;

value:
    if (UNLIKELY(p == end))
        return NULL;
    switch (*p) {
    case '"':
        p = scan_string(p + 1, end);
        if (p == NULL)
            return NULL;
        break;
    case '{':
        if (depth >= CMX_JSON_MAX_DEPTH)
            return NULL;
        stack[depth / 64] |= (uint64_t)1 << (depth % 64);
        depth++;
        p = skip_ws(p + 1, end);
        if (p < end && *p == '}') {
            p++;
            depth--;
            break;
        }
        goto key;
    case '[':
        if (depth >= CMX_JSON_MAX_DEPTH)
            return NULL;
        stack[depth / 64] &= ~((uint64_t)1 << (depth % 64));
        depth++;
        p = skip_ws(p + 1, end);
        if (p < end && *p == ']') {
            p++;
            depth--;
            break;
        }
        goto value;
    case 't':
        if (end - p < 4 || memcmp(p, "true", 4) != 0)
            return NULL;
        p += 4;
        break;
    case 'f':
        if (end - p < 5 || memcmp(p, "false", 5) != 0)
            return NULL;
        p += 5;
        break;
    case 'n':
        if (end - p < 4 || memcmp(p, "null", 4) != 0)
            return NULL;
        p += 4;
        break;
    default:
        p = scan_number(p, end);
        if (p == NULL)
            return NULL;
        break;
    }

    /* A value just ended; what may follow depends on the innermost container. */
after:
    if (depth == base)
        return p;
    p = skip_ws(p, end);
    if (UNLIKELY(p == end))
        return NULL;
    if (stack[(depth - 1) / 64] >> ((depth - 1) % 64) & 1) {
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            goto key;
        }
        if (*p != '}')
            return NULL;
    } else {
        if (*p == ',') {
            p = skip_ws(p + 1, end);
            goto value;
        }
        if (*p != ']')
            return NULL;
    }
    p++;
    depth--;
    goto after;

key:
    if (p == end || *p != '"')
        return NULL;
    p = scan_string(p + 1, end);
    if (p == NULL)
        return NULL;
    p = skip_ws(p, end);
    if (p == end || *p != ':')
        return NULL;
    p = skip_ws(p + 1, end);
    goto value;
}

int cmx_json_scan(const char *s, size_t len, enum cmx_json_type *top,
                  struct cmx_json_member *members, size_t max, size_t *n)
{
    const unsigned char *p, *end;
    enum cmx_json_type t;
    size_t count = 0;

    if (top != NULL)
        *top = CMX_JSON_INVALID;
    if (n != NULL)
        *n = 0;
    if (len == 0)
        return CMX_EJSON;
    p = (const unsigned char *)s;
    end = p + len;
    p = skip_ws(p, end);
    if (p == end)
        return CMX_EJSON;
    t = cmx_json_type_of(*p);

    if (t != CMX_JSON_OBJECT) {
        p = scan_value(p, end, 0);
        if (p == NULL)
            return CMX_EJSON;
    } else {
        /* The top-level object is walked here so that each member can be recorded. */
        p = skip_ws(p + 1, end);
        if (p < end && *p == '}') {
            p++;
        } else {
            for (;;) {
                const unsigned char *kstart = p, *vstart;
                if (p == end || *p != '"')
                    return CMX_EJSON;
                bool key_escaped = false;
                p = scan_string_esc(p + 1, end, &key_escaped);
                if (p == NULL)
                    return CMX_EJSON;
                const unsigned char *kend = p - 1;
                p = skip_ws(p, end);
                if (p == end || *p != ':')
                    return CMX_EJSON;
                vstart = p = skip_ws(p + 1, end);
                if (p == end)
                    return CMX_EJSON;
                p = scan_value(p, end, 1);
                if (p == NULL)
                    return CMX_EJSON;
                if (members != NULL && count < max) {
                    struct cmx_json_member *m = &members[count];
                    m->key = (const char *)kstart + 1;
                    m->key_len = (size_t)(kend - kstart - 1);
                    m->key_escaped = key_escaped;
                    m->val = (const char *)vstart;
                    m->val_len = (size_t)(p - vstart);
                    m->type = cmx_json_type_of(*vstart);
                    m->start = (const char *)kstart;
                    m->end = (const char *)p;
                }
                count++;
                p = skip_ws(p, end);
                if (p == end)
                    return CMX_EJSON;
                if (*p == ',') {
                    p = skip_ws(p + 1, end);
                    continue;
                }
                if (*p != '}')
                    return CMX_EJSON;
                p++;
                break;
            }
        }
    }
    p = skip_ws(p, end);
    if (p != end)
        return CMX_EJSON;

    if (members != NULL && count > max) {
        if (n != NULL)
            *n = max;
        return CMX_ETOOBIG;
    }
    if (n != NULL)
        *n = count;
    if (top != NULL)
        *top = t;
    return 0;
}

static int utf8_put(unsigned long cp, unsigned char *o)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes the escape at *pp (which points at the backslash) into o (room for 4 bytes),
 * advancing *pp. A surrogate pair becomes one code point; a lone or mismatched surrogate
 * becomes U+FFFD so that the output is always valid UTF-8. Returns the bytes written, or
 * -1 for an invalid escape. The output is never longer than the escape text. */
static int unescape(const unsigned char **pp, const unsigned char *end, unsigned char *o)
{
    const unsigned char *p = *pp;
    long cp;

    if (end - p < 2)
        return -1;
    switch (p[1]) {
    case '"':
    case '\\':
    case '/':
        o[0] = p[1];
        break;
    case 'b':
        o[0] = '\b';
        break;
    case 'f':
        o[0] = '\f';
        break;
    case 'n':
        o[0] = '\n';
        break;
    case 'r':
        o[0] = '\r';
        break;
    case 't':
        o[0] = '\t';
        break;
    case 'u':
        if (end - p < 6 || (cp = hex4(p + 2)) < 0)
            return -1;
        p += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            long lo = -1;
            if (end - p >= 6 && p[0] == '\\' && p[1] == 'u')
                lo = hex4(p + 2);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            } else {
                cp = 0xfffd; /* the next escape, if any, is decoded on its own */
            }
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            cp = 0xfffd;
        }
        *pp = p;
        return utf8_put((unsigned long)cp, o);
    default:
        return -1;
    }
    *pp = p + 2;
    return 1;
}

int cmx_json_string_decode(const char *raw, size_t len, char *out, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)raw, *end;
    unsigned char *o = (unsigned char *)out;

    if (len == 0) {
        out[0] = '\0';
        *out_len = 0;
        return 0;
    }
    end = p + len;
    while (p < end) {
        const unsigned char *q = skip_plain(p, end);
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        p = q;
        if (p == end)
            break;
        if (*p == '\\') {
            int k = unescape(&p, end, o);
            if (k < 0)
                return CMX_EJSON;
            o += k;
        } else if (*p >= 0x80) {
            q = cmx_utf8_seq(p, end);
            if (q == NULL)
                return CMX_EJSON;
            memcpy(o, p, (size_t)(q - p));
            o += q - p;
            p = q;
        } else {
            return CMX_EJSON; /* unescaped quote or control character */
        }
    }
    *o = '\0';
    *out_len = (size_t)(o - (unsigned char *)out);
    return 0;
}

/* Whether member m's escaped key decodes to name[0..nlen) (compared as it decodes, without
 * a buffer). */
static bool key_eq_escaped(const struct cmx_json_member *m, const char *name, size_t nlen)
{
    const char *raw = m->key;
    size_t len = m->key_len;
    const unsigned char *p = (const unsigned char *)raw, *end = p + len;
    const unsigned char *nm = (const unsigned char *)name;
    size_t j = 0;

    /* escapes only make the raw text longer than what it decodes to */
    if (len <= nlen)
        return false;
    while (p < end) {
        if (*p != '\\') {
            if (j >= nlen || *p != nm[j])
                return false;
            p++;
            j++;
        } else {
            unsigned char u[4];
            int k = unescape(&p, end, u);
            if (k < 0 || nlen - j < (size_t)k || memcmp(nm + j, u, (size_t)k) != 0)
                return false;
            j += (size_t)k;
        }
    }
    return j == nlen;
}

/* Whether m's key decodes to name (nlen bytes). Inline: a lookup compares every member, and
 * most differ in length or first byte. */
static inline bool key_eq(const struct cmx_json_member *m, const char *name, size_t nlen)
{
    if (m->key_escaped)
        return key_eq_escaped(m, name, nlen);
    return m->key_len == nlen && (nlen == 0 || m->key[0] == name[0]) &&
           memcmp(m->key, name, nlen) == 0;
}

const struct cmx_json_member *cmx_json_find(const struct cmx_json_member *members, size_t n,
                                            const char *name)
{
    size_t nlen = strlen(name);
    for (size_t i = n; i-- > 0;) {
        if (key_eq(&members[i], name, nlen))
            return &members[i];
    }
    return NULL;
}

size_t cmx_json_count(const struct cmx_json_member *members, size_t n, const char *name)
{
    size_t nlen = strlen(name), c = 0;
    for (size_t i = 0; i < n; i++)
        c += key_eq(&members[i], name, nlen);
    return c;
}
