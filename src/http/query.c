/* Query-string parameters: split on '&', compare the decoded name, decode the value. */
#include "http/query.h"
#include "core/fmt.h"

#include <string.h>

#include "core/err.h"

/* Decodes s[0..len) into out (room for len + 1 bytes). Returns the decoded length, or -1 on
 * a bad escape or a NUL byte. */
static long decode(const char *s, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi, lo;
            if (i + 2 >= len || (hi = cmx_hex_val((unsigned char)s[i + 1])) < 0 ||
                (lo = cmx_hex_val((unsigned char)s[i + 2])) < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0')
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return (long)o;
}

int cmx_query_get(const char *query, const char *name, struct cmx_arena *a, const char **value)
{
    size_t nlen = strlen(name);
    const char *p = query;

    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, '&');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t klen = eq ? (size_t)(eq - p) : plen;
        char key[64];

        if (klen < sizeof(key) && decode(p, klen, key) == (long)nlen &&
            memcmp(key, name, nlen) == 0) {
            size_t vlen = eq ? plen - klen - 1 : 0;
            char *v = cmx_arena_alloc(a, vlen + 1);
            if (v == NULL)
                return CMX_ENOMEM;
            if (decode(eq ? eq + 1 : p + plen, vlen, v) < 0)
                return CMX_EINVAL;
            *value = v;
            return 0;
        }
        p = end ? end + 1 : NULL;
    }
    return CMX_ENOTFOUND;
}

size_t cmx_percent_decode(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        int h, l;
        if (*r == '%' && (h = cmx_hex_val((unsigned char)r[1])) >= 0 &&
            (l = cmx_hex_val((unsigned char)r[2])) >= 0) {
            *w++ = (char)(h * 16 + l);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}
