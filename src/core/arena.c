#include "core/arena.h"
#include "core/err.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN       16
#define CHUNK_MIN   16384
#define CHUNK_CACHE 32 /* CHUNK_MIN chunks kept per thread for the next requests */

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

/* Freed CHUNK_MIN chunks, per thread: a request that outgrows the embedded block takes one
 * from here instead of malloc, and gives it back on reset (nginx keeps its pools' blocks the
 * same way). Thread-local, so no lock; a chunk freed on another thread than the one that
 * allocated it simply moves to that thread's cache. */
static _Thread_local struct cmx_arena_chunk *chunk_cache;
static _Thread_local unsigned chunk_cache_n;

/* A thread's cache is freed when the thread exits (a pthread key destructor; set the first
 * time the thread caches a chunk). */
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_free(void *unused)
{
    (void)unused;
    while (chunk_cache != NULL) {
        struct cmx_arena_chunk *c = chunk_cache;
        chunk_cache = c->next;
        free(c);
    }
    chunk_cache_n = 0;
}

static void cache_key_make(void)
{
    pthread_key_create(&cache_key, cache_free);
}

static struct cmx_arena_chunk *chunk_new(size_t size)
{
    if (size == CHUNK_MIN && chunk_cache != NULL) {
        struct cmx_arena_chunk *c = chunk_cache;
        chunk_cache = c->next;
        chunk_cache_n--;
        return c;
    }
    struct cmx_arena_chunk *c = malloc(sizeof(*c) + size);
    if (c != NULL)
        c->size = size;
    return c;
}

static void chunk_free(struct cmx_arena_chunk *c)
{
    if (c->size == CHUNK_MIN && chunk_cache_n < CHUNK_CACHE) {
        if (chunk_cache_n == 0) { /* arm the destructor (cheap after the first time) */
            pthread_once(&cache_once, cache_key_make);
            pthread_setspecific(cache_key, (void *)1);
        }
        c->next = chunk_cache;
        chunk_cache = c;
        chunk_cache_n++;
        return;
    }
    free(c);
}

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
    struct cmx_arena_chunk *c = chunk_new(size);
    if (c == NULL)
        return NULL;
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
        chunk_free(c);
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
