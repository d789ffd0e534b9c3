/* libFuzzer target for src/core/json_scan.c, differential against json-c (strict mode with
 * UTF-8 validation). Both must agree on validity, on the top-level type, on decoded
 * top-level strings and on the keys and value types of a top-level object; where they
 * disagree only for one of the documented reasons below, the input is skipped.
 *
 * json-c 0.16 is laxer than RFC 8259 even with JSON_TOKENER_STRICT, and we are not:
 *   - it accepts raw control characters (tab, LF, 0x01...) inside strings;
 *   - its UTF-8 check only looks at lead/continuation bit patterns, so it accepts
 *     overlongs (C0 80), UTF-16 surrogates (ED A0 80) and code points above U+10FFFF;
 *   - it accepts NaN, Infinity and -Infinity;
 *   - it accepts some malformed numbers ("1.", "-01", "1.e5");
 *   - it accepts object keys in single quotes ({'a':1}), though not single-quoted values;
 *   - it counts a scalar as a nesting level, so its depth limit differs by one from our
 *     CMX_JSON_MAX_DEPTH containers: inputs nested deeper than that are skipped.
 * and it has a bug: after combining a \u surrogate pair it tests the code point with
 * ((cp & 0xFC00) == 0xD800) again, so every pair decoding to U+xD800..U+xDFFF (U+1D800..,
 * U+2D800.. (CJK Ext. B/C), ..., U+10D800..) comes out as U+FFFD (plus whatever its
 * "need a low surrogate" state does to what follows); strings and keys with such a pair
 * are not compared.
 * It also stops at a NUL byte; we pass it a NUL-terminated copy and require it to have
 * consumed everything before the terminator, so an embedded NUL is an error for both. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/err.h"
#include "core/json_scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MEMBERS 64

/* What in the input could make json-c accept what we (rightly) reject. */
struct lax {
    bool ctl;    /* raw byte < 0x20 inside a string */
    bool utf8;   /* a byte sequence that is not strict UTF-8 */
    bool naninf; /* NaN / Infinity spelled somewhere */
    bool number; /* a number-like token outside strings that breaks the grammar */
    bool squote; /* a single quote outside strings (json-c takes {'key':...}) */
    bool deep;   /* bracket nesting (outside strings) beyond our limit */
};

static size_t strict_utf8_len(const uint8_t *p, size_t left)
{
    unsigned c = p[0], lo = 0x80, hi = 0xbf;
    size_t k;
    if (c < 0xc2 || c > 0xf4)
        return 0;
    k = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (left < k || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return k;
}

static bool digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static bool strict_number(const uint8_t *p, size_t n)
{
    size_t i = 0;
    if (i < n && p[i] == '-')
        i++;
    if (i < n && p[i] == '0') {
        i++;
    } else if (i < n && digit(p[i])) {
        while (i < n && digit(p[i]))
            i++;
    } else {
        return false;
    }
    if (i < n && p[i] == '.') {
        if (++i >= n || !digit(p[i]))
            return false;
        while (i < n && digit(p[i]))
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        if (++i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !digit(p[i]))
            return false;
        while (i < n && digit(p[i]))
            i++;
    }
    return i == n;
}

static void lex(const uint8_t *d, size_t n, struct lax *lx)
{
    bool in_str = false;
    size_t depth = 0;

    memset(lx, 0, sizeof(*lx));
    for (size_t i = 0; i < n; i++) {
        uint8_t c = d[i];
        if (c >= 0x80) {
            size_t k = strict_utf8_len(d + i, n - i);
            if (k == 0)
                lx->utf8 = true;
            else
                i += k - 1;
            continue;
        }
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            else if (c < 0x20)
                lx->ctl = true;
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > CMX_JSON_MAX_DEPTH)
                lx->deep = true;
        } else if (c == ']' || c == '}') {
            if (depth > 0)
                depth--;
        } else if (c == 'N' || c == 'I') {
            lx->naninf = true;
        } else if (c == '-' || digit(c)) {
            size_t j = i;
            while (j < n && (d[j] == '-' || d[j] == '+' || d[j] == '.' || d[j] == 'e' ||
                             d[j] == 'E' || digit(d[j])))
                j++;
            if (!strict_number(d + i, j - i))
                lx->number = true;
            i = j - 1;
        } else if (c == '.') {
            lx->number = true;
        } else if (c == '\'') {
            lx->squote = true;
        }
    }
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* Whether raw string text holds a \u surrogate pair that json-c decodes wrongly. */
static bool jc_pair_bug(const char *raw, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (raw[i] != '\\')
            continue;
        if (raw[i + 1] == 'u' && i + 12 <= len && raw[i + 6] == '\\' && raw[i + 7] == 'u') {
            int hi = hex4(raw + i + 2), lo = hex4(raw + i + 8);
            if (hi >= 0xd800 && hi <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) {
                long cp = 0x10000 + ((long)(hi - 0xd800) << 10) + (lo - 0xdc00);
                if ((cp & 0xf800) == 0xd800)
                    return true;
            }
        }
        i++; /* skip the escaped character */
    }
    return false;
}

static enum cmx_json_type jc_type(struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_null:
        return CMX_JSON_NULL;
    case json_type_boolean:
        return json_object_get_boolean(o) ? CMX_JSON_TRUE : CMX_JSON_FALSE;
    case json_type_double:
    case json_type_int:
        return CMX_JSON_NUMBER;
    case json_type_object:
        return CMX_JSON_OBJECT;
    case json_type_array:
        return CMX_JSON_ARRAY;
    case json_type_string:
        return CMX_JSON_STRING;
    }
    return CMX_JSON_INVALID;
}

/* Our decoding of a string value (with its quotes) equals json-c's string. */
static void check_string(const char *val, size_t val_len, struct json_object *o)
{
    char *out = malloc(val_len);
    size_t out_len;
    if (out == NULL)
        return;
    if (cmx_json_string_decode(val + 1, val_len - 2, out, &out_len) != 0)
        __builtin_trap();
    if (jc_pair_bug(val + 1, val_len - 2)) {
        free(out);
        return;
    }
    if (out_len != (size_t)json_object_get_string_len(o) ||
        memcmp(out, json_object_get_string(o), out_len) != 0)
        __builtin_trap();
    free(out);
}

static void check_object(const uint8_t *data, size_t size, struct json_object *o)
{
    struct cmx_json_member m[MAX_MEMBERS];
    char *keys[MAX_MEMBERS];
    size_t n, distinct = 0;
    bool nul_key = false;

    if (cmx_json_scan((const char *)data, size, NULL, m, MAX_MEMBERS, &n) != 0)
        return; /* more members than we keep */
    for (size_t i = 0; i < n; i++) {
        size_t key_len;
        keys[i] = malloc(m[i].key_len + 1);
        if (keys[i] == NULL)
            __builtin_trap();
        if (cmx_json_string_decode(m[i].key, m[i].key_len, keys[i], &key_len) != 0)
            __builtin_trap();
        /* json-c keys are C strings: one with an escaped NUL is cut short and may then
         * collide with another key; one with json-c's pair bug is mangled. Such objects
         * only get the self-checks. */
        if (memchr(keys[i], '\0', key_len) != NULL || jc_pair_bug(m[i].key, m[i].key_len))
            nul_key = true;
        /* Each value span is a valid JSON text of the reported type on its own. */
        enum cmx_json_type t;
        if (cmx_json_scan(m[i].val, m[i].val_len, &t, NULL, 0, NULL) != 0 || t != m[i].type)
            __builtin_trap();
        if (m[i].end != m[i].val + m[i].val_len || m[i].start != m[i].key - 1)
            __builtin_trap();
    }
    for (size_t i = 0; i < n; i++) {
        if (nul_key)
            break;
        const struct cmx_json_member *f = cmx_json_find(m, n, keys[i]);
        if (f == NULL || f < &m[i] || cmx_json_count(m, n, keys[i]) == 0)
            __builtin_trap();
        if (f == &m[i]) {
            /* The last duplicate is the one json-c keeps. */
            struct json_object *v;
            distinct++;
            if (!json_object_object_get_ex(o, keys[i], &v) || jc_type(v) != f->type)
                __builtin_trap();
            if (f->type == CMX_JSON_STRING)
                check_string(f->val, f->val_len, v);
        }
    }
    if (!nul_key && distinct != (size_t)json_object_object_length(o))
        __builtin_trap();
    for (size_t i = 0; i < n; i++)
        free(keys[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum cmx_json_type top;
    size_t n;
    int r = cmx_json_scan((const char *)data, size, &top, NULL, 0, &n);
    bool ours = r == 0;

    if (r != 0 && r != CMX_EJSON)
        __builtin_trap();

    char *copy = malloc(size + 1);
    if (copy == NULL)
        return 0;
    if (size > 0)
        memcpy(copy, data, size);
    copy[size] = '\0';
    struct json_tokener *tok = json_tokener_new_ex(CMX_JSON_MAX_DEPTH + 1);
    if (tok == NULL) {
        free(copy);
        return 0;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    struct json_object *o = json_tokener_parse_ex(tok, copy, (int)size + 1);
    bool theirs = json_tokener_get_error(tok) == json_tokener_success &&
                  json_tokener_get_parse_end(tok) == size;
    if (!theirs && o != NULL) {
        json_object_put(o);
        o = NULL;
    }

    if (ours != theirs) {
        struct lax lx;
        lex(data, size, &lx);
        bool explained =
            lx.deep || (!ours && (lx.ctl || lx.utf8 || lx.naninf || lx.number || lx.squote));
        if (!explained)
            __builtin_trap();
    } else if (ours) {
        if (jc_type(o) != top)
            __builtin_trap();
        if (top == CMX_JSON_STRING) {
            const uint8_t *s = data, *e = data + size;
            while (*s != '"')
                s++;
            while (e[-1] != '"')
                e--;
            check_string((const char *)s, (size_t)(e - s), o);
        } else if (top == CMX_JSON_OBJECT) {
            check_object(data, size, o);
        }
    }
    json_object_put(o);
    json_tokener_free(tok);
    free(copy);
    return 0;
}
