#include "core/arena.h"
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN     16
#define CHUNK_MIN 8192

struct cmx_arena_chunk {
    struct cmx_arena_chunk *next;
    size_t size;
    _Alignas(ALIGN) char data[];
};

struct cmx_arena_cleanup {
    struct cmx_arena_cleanup *next;
    void (*fn)(void *);
    void *data;
};

void cmx_arena_init(struct cmx_arena *a)
{
    a->chunks = NULL;
    a->cleanups = NULL;
    a->total = 0;
    a->cur = a->first;
    a->end = a->first + sizeof(a->first);
}

static char *align_up(char *p)
{
    return (char *)(((size_t)p + (ALIGN - 1)) & ~(size_t)(ALIGN - 1));
}

void *cmx_arena_alloc(struct cmx_arena *a, size_t n)
{
    char *p = align_up(a->cur);
    if (n == 0)
        n = 1;
    if (p <= a->end && (size_t)(a->end - p) >= n) {
        a->cur = p + n;
        a->total += n;
        return p;
    }
    size_t size = n > CHUNK_MIN / 2 ? n : CHUNK_MIN;
    struct cmx_arena_chunk *c = malloc(sizeof(*c) + size);
    if (c == NULL)
        return NULL;
    c->size = size;
    c->next = a->chunks;
    a->chunks = c;
    a->total += n;
    if (size == n)
        return c->data; /* a large block: keep using the previous chunk's tail */
    a->cur = c->data + n;
    a->end = c->data + size;
    return c->data;
}

void *cmx_arena_calloc(struct cmx_arena *a, size_t n)
{
    void *p = cmx_arena_alloc(a, n);
    if (p != NULL)
        memset(p, 0, n);
    return p;
}

char *cmx_arena_strndup(struct cmx_arena *a, const char *s, size_t n)
{
    char *p = cmx_arena_alloc(a, n + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *cmx_arena_printf(struct cmx_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = cmx_arena_alloc(a, (size_t)n + 1);
    if (p == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int cmx_arena_cleanup_add(struct cmx_arena *a, void (*fn)(void *), void *data)
{
    struct cmx_arena_cleanup *c = cmx_arena_alloc(a, sizeof(*c));
    if (c == NULL)
        return CMX_ENOMEM;
    c->fn = fn;
    c->data = data;
    c->next = a->cleanups;
    a->cleanups = c;
    return 0;
}

void cmx_arena_reset(struct cmx_arena *a)
{
    /* cleanups may allocate nothing but may run in any order relative to each other's
     * data; they live in the arena itself, so walk them before freeing chunks */
    while (a->cleanups != NULL) {
        struct cmx_arena_cleanup *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->data);
    }
    struct cmx_arena_chunk *c = a->chunks;
    while (c != NULL) {
        struct cmx_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    cmx_arena_init(a);
}

char *cmx_arena_concat(struct cmx_arena *a, ...)
{
    va_list ap;
    size_t total = 0;
    const char *s;

    va_start(ap, a);
    while ((s = va_arg(ap, const char *)) != NULL)
        total += strlen(s);
    va_end(ap);
    char *out = cmx_arena_alloc(a, total + 1);
    if (out == NULL)
        return NULL;
    char *p = out;
    va_start(ap, a);
    while ((s = va_arg(ap, const char *)) != NULL) {
        size_t n = strlen(s);
        memcpy(p, s, n);
        p += n;
    }
    va_end(ap);
    *p = '\0';
    return out;
}
