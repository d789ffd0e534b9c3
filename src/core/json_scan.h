/* A validating JSON scanner that builds no tree: it checks a complete JSON text (RFC 8259,
 * strict: one value, optional surrounding whitespace, no trailing bytes, nesting depth at
 * most CMX_JSON_MAX_DEPTH, valid escapes and UTF-8 in strings) and, when the top-level
 * value is an object, reports each member's key and raw value span. Gateways rewrite a
 * request by splicing spans, so number text (64-bit seeds, 1e400) passes through intact. */
#ifndef CMX_CORE_JSON_SCAN_H
#define CMX_CORE_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

#define CMX_JSON_MAX_DEPTH 128

enum cmx_json_type {
    CMX_JSON_INVALID = 0,
    CMX_JSON_NULL,
    CMX_JSON_TRUE,
    CMX_JSON_FALSE,
    CMX_JSON_NUMBER,
    CMX_JSON_STRING,
    CMX_JSON_ARRAY,
    CMX_JSON_OBJECT,
};

struct cmx_json_member {
    const char *key; /* raw key text between the quotes (escapes not decoded) */
    size_t key_len;
    bool key_escaped; /* the key text holds a backslash escape */
    const char *val;  /* raw value text; for strings it includes the quotes */
    size_t val_len;
    enum cmx_json_type type; /* type of the value */
    const char *start;       /* first byte of the member (the key's opening quote) */
    const char *end;         /* one past the value */
};

/* The type of the JSON value whose first byte is c (valid JSON assumed: anything that is
 * not a string, object, array, true, false or null is a number). */
static inline enum cmx_json_type cmx_json_type_of(unsigned char c)
{
    switch (c) {
    case '{':
        return CMX_JSON_OBJECT;
    case '[':
        return CMX_JSON_ARRAY;
    case '"':
        return CMX_JSON_STRING;
    case 't':
        return CMX_JSON_TRUE;
    case 'f':
        return CMX_JSON_FALSE;
    case 'n':
        return CMX_JSON_NULL;
    default:
        return CMX_JSON_NUMBER;
    }
}

/* Scans s[0..len). On success returns 0, sets *top to the top-level type and, when it is
 * an object, stores its members (in order) into members[0..max) and their count in *n.
 * Returns CMX_EJSON for invalid JSON, CMX_ETOOBIG when the object has more than max
 * members. members/n may be NULL/0 when only validation is wanted. Thread: any.
 * Details: top and n may be NULL. Validity is checked first, so invalid JSON is always
 * CMX_EJSON (*top = CMX_JSON_INVALID, *n = 0). On CMX_ETOOBIG the first max members are
 * stored and *n = max. With members NULL, *n gets the member count and there is no
 * CMX_ETOOBIG. Spans point into s. No allocation, no recursion. */
int cmx_json_scan(const char *s, size_t len, enum cmx_json_type *top,
                  struct cmx_json_member *members, size_t max, size_t *n);

/* Returns the last member whose decoded key equals name, or NULL. name is a NUL-terminated
 * UTF-8 string, so a key holding \u0000 never matches. members may be NULL when n is 0. */
const struct cmx_json_member *cmx_json_find(const struct cmx_json_member *members, size_t n,
                                            const char *name);

/* Counts members whose decoded key equals name (to reject duplicates of keys we rewrite). */
size_t cmx_json_count(const struct cmx_json_member *members, size_t n, const char *name);

/* The first byte at or after p that is not JSON whitespace (space, tab, LF, CR), or end. */
static inline const char *cmx_json_skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Checks one UTF-8 sequence starting at p (*p >= 0x80, p < end) per RFC 3629: no overlongs,
 * no UTF-16 surrogates, nothing above U+10FFFF. Returns the byte after it, or NULL when it is
 * not valid UTF-8. Thread: any. */
const unsigned char *cmx_utf8_seq(const unsigned char *p, const unsigned char *end);

/* Decodes the raw text of a JSON string (without quotes, as in cmx_json_member.key or the
 * inside of a string value) into UTF-8. out must have room for len+1 bytes; the result is
 * NUL-terminated; *out_len gets its length. Returns 0 or CMX_EJSON. A lone or mismatched
 * \u surrogate becomes U+FFFD, so the output is always valid UTF-8 (it may contain NUL
 * bytes from \u0000: use *out_len). */
int cmx_json_string_decode(const char *raw, size_t len, char *out, size_t *out_len);

#endif
