/* Growable byte buffer with a hard cap (curl's dynbuf): anything sized by a client or an
 * upstream goes through one of these so that no peer can make us allocate without bound.
 * The buffer always keeps a NUL after len bytes so that text can be used as a C string. */
#ifndef CMX_CORE_BUF_H
#define CMX_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

struct cmx_buf {
    char *data; /* malloc'd, NULL until the first append */
    size_t len; /* bytes used */
    size_t cap; /* bytes allocated (excluding the trailing NUL) */
    size_t max; /* hard limit on len; appends beyond it fail with CMX_ETOOBIG */
};

/* Initialises an empty buffer that will refuse to grow past max bytes. */
void cmx_buf_init(struct cmx_buf *b, size_t max);

/* Appends n bytes. 0, CMX_ETOOBIG (nothing appended) or CMX_ENOMEM. Inline when the bytes
 * fit the allocation (the common case: a few dozen appends build every response head);
 * cmx_buf_append_grow does the rest. */
int cmx_buf_append_grow(struct cmx_buf *b, const void *p, size_t n);
static inline int cmx_buf_append(struct cmx_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len > n && b->max - b->len >= n) { /* room, the NUL included */
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
    }
    return cmx_buf_append_grow(b, p, n);
}

/* Appends a NUL-terminated string. Same returns as cmx_buf_append. */
int cmx_buf_puts(struct cmx_buf *b, const char *s);

/* Appends printf output. Same returns as cmx_buf_append. */
int cmx_buf_printf(struct cmx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cmx_buf_vprintf(struct cmx_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* Appends s as the body of a JSON string (escaped, without the quotes). A byte that is not
 * part of a valid UTF-8 sequence becomes \ufffd, so the result is always valid JSON text. */
int cmx_buf_json_escape(struct cmx_buf *b, const char *s, size_t n);

/* Makes room for at least n more bytes; returns a pointer to them or NULL (too big / no
 * memory). Commit what was written with cmx_buf_commit(). */
char *cmx_buf_reserve(struct cmx_buf *b, size_t n);
void cmx_buf_commit(struct cmx_buf *b, size_t n);

/* Removes the first n bytes (n <= len), keeping the rest. */
void cmx_buf_consume(struct cmx_buf *b, size_t n);

/* Forgets the contents but keeps the allocation. */
void cmx_buf_reset(struct cmx_buf *b);

/* Frees the allocation; the buffer is empty and reusable afterwards. */
void cmx_buf_free(struct cmx_buf *b);

#endif
