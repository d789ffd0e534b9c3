/* Per-request arena (nginx r->pool, h2o req->pool): every allocation tied to one request
 * comes from here and is released in one call when the request ends. Cleanups registered
 * with cmx_arena_cleanup_add() run (last registered first) before the memory goes. */
#ifndef CMX_CORE_ARENA_H
#define CMX_CORE_ARENA_H

#include <stddef.h>

struct cmx_arena_chunk;
struct cmx_arena_cleanup;

struct cmx_arena {
    struct cmx_arena_chunk *chunks;     /* newest first; the embedded first chunk is not listed */
    char *cur;                          /* next free byte in the current chunk */
    char *end;                          /* end of the current chunk */
    struct cmx_arena_cleanup *cleanups; /* newest first */
    size_t total;                       /* bytes handed out, for caps and stats */
    char first[2048];                   /* small requests never touch malloc for the arena */
};

/* Prepares an embedded arena. Never fails. */
void cmx_arena_init(struct cmx_arena *a);

/* Returns n bytes aligned for any type, owned by the arena; NULL only when malloc fails. */
void *cmx_arena_alloc(struct cmx_arena *a, size_t n);

/* Like cmx_arena_alloc but zero-filled. */
void *cmx_arena_calloc(struct cmx_arena *a, size_t n);

/* Copies n bytes of s and NUL-terminates the copy. NULL on allocation failure. */
char *cmx_arena_strndup(struct cmx_arena *a, const char *s, size_t n);

/* printf into the arena. NULL on allocation failure. */
char *cmx_arena_printf(struct cmx_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Concatenates the NUL-terminated strings given (up to a NULL) into one arena string, without
 * printf. NULL on allocation failure. */
char *cmx_arena_concat(struct cmx_arena *a, ...) __attribute__((sentinel));

/* Registers fn(data) to run when the arena is destroyed or reset. 0 or CMX_ENOMEM. */
int cmx_arena_cleanup_add(struct cmx_arena *a, void (*fn)(void *), void *data);

/* Runs the cleanups and frees every chunk; the arena is ready for reuse afterwards. */
void cmx_arena_reset(struct cmx_arena *a);

#endif
