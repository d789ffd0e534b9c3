#include "core/buf.h"
#include "core/err.h"
#include "core/json_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cmx_buf_init(struct cmx_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

char *cmx_buf_reserve(struct cmx_buf *b, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        if (cap > b->max)
            cap = b->max;
        char *p = realloc(b->data, cap + 1);
        if (p == NULL)
            return NULL;
        b->data = p;
        b->cap = cap;
    }
    return b->data + b->len;
}

void cmx_buf_commit(struct cmx_buf *b, size_t n)
{
    b->len += n;
    b->data[b->len] = '\0';
}

int cmx_buf_append_grow(struct cmx_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    char *dst = cmx_buf_reserve(b, n);
    if (dst == NULL)
        return (n > b->max || b->len > b->max - n) ? CMX_ETOOBIG : CMX_ENOMEM;
    memcpy(dst, p, n);
    cmx_buf_commit(b, n);
    return 0;
}

int cmx_buf_puts(struct cmx_buf *b, const char *s)
{
    return cmx_buf_append(b, s, strlen(s));
}

int cmx_buf_vprintf(struct cmx_buf *b, const char *fmt, va_list ap)
{
    char small[256];
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(small, sizeof(small), fmt, cp);
    va_end(cp);
    if (n < 0)
        return CMX_EINVAL;
    if ((size_t)n < sizeof(small))
        return cmx_buf_append(b, small, (size_t)n);
    char *dst = cmx_buf_reserve(b, (size_t)n + 1);
    if (dst == NULL)
        return CMX_ETOOBIG;
    vsnprintf(dst, (size_t)n + 1, fmt, ap);
    cmx_buf_commit(b, (size_t)n);
    return 0;
}

int cmx_buf_printf(struct cmx_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = cmx_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

int cmx_buf_json_escape(struct cmx_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;
    int r;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[6];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            if (c < 0x20) {
                u[0] = '\\', u[1] = 'u', u[2] = '0', u[3] = '0', u[4] = hex[c >> 4];
                u[5] = hex[c & 15];
            } else if (c >= 0x80) {
                const unsigned char *q = (const unsigned char *)s + i;
                const unsigned char *next = cmx_utf8_seq(q, (const unsigned char *)s + n);
                if (next != NULL) {
                    i += (size_t)(next - q) - 1; /* a whole valid sequence, as is */
                    continue;
                }
                esc = "\\ufffd"; /* a byte that is not UTF-8: JSON text must be */
            }
        }
        if (esc == NULL && c >= 0x20)
            continue;
        if ((r = cmx_buf_append(b, s + start, i - start)) != 0)
            return r;
        r = esc ? cmx_buf_puts(b, esc) : cmx_buf_append(b, u, 6);
        if (r != 0)
            return r;
        start = i + 1;
    }
    return cmx_buf_append(b, s + start, n - start);
}

void cmx_buf_consume(struct cmx_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
    }
    if (b->data != NULL)
        b->data[b->len] = '\0';
}

void cmx_buf_reset(struct cmx_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

void cmx_buf_free(struct cmx_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
