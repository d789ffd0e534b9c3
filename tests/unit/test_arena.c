/* The per-request arena (src/core/arena.c) with its per-thread chunk cache, and the growable
 * buffer's inline append (src/core/buf.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/err.h"

/* Fills every allocation with its own byte and checks none was overwritten by another. */
static void test_alignment_and_independence(void **state)
{
    (void)state;
    struct cmx_arena a;
    cmx_arena_init(&a);
    enum { N = 600 };
    unsigned char *p[N];
    size_t len[N];
    for (int i = 0; i < N; i++) {
        /* small ones, ones that spill into chunks, and large ones that get their own block */
        len[i] = i % 50 == 0 ? 9000 + (size_t)i : (size_t)(1 + i % 97);
        p[i] = cmx_arena_alloc(&a, len[i]);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % 16, 0);
        memset(p[i], i & 0xff, len[i]);
    }
    for (int i = 0; i < N; i++)
        for (size_t k = 0; k < len[i]; k++)
            assert_int_equal(p[i][k], i & 0xff);
    assert_true(a.total >= (size_t)N);
    cmx_arena_reset(&a);
    assert_int_equal(a.total, 0);
}

static int order[8], n_order;

static void note(void *data)
{
    order[n_order++] = (int)(intptr_t)data;
}

/* Cleanups run newest first on reset, once; the arena is reusable afterwards, and chunks
 * that come back from the cache hold no stale state the new owner depends on. */
static void test_cleanups_and_reuse(void **state)
{
    (void)state;
    struct cmx_arena a;
    cmx_arena_init(&a);
    for (int round = 0; round < 50; round++) {
        n_order = 0;
        for (int i = 0; i < 3; i++)
            assert_int_equal(cmx_arena_cleanup_add(&a, note, (void *)(intptr_t)i), 0);
        /* enough to need several 16 KiB chunks each round */
        for (int i = 0; i < 10; i++) {
            char *s = cmx_arena_alloc(&a, 7000);
            assert_non_null(s);
            memset(s, 'a' + round % 26, 7000);
        }
        char *z = cmx_arena_calloc(&a, 4000);
        assert_non_null(z);
        for (int i = 0; i < 4000; i++)
            assert_int_equal(z[i], 0);
        char *d = cmx_arena_strndup(&a, "hello world", 5);
        assert_string_equal(d, "hello");
        char *c = cmx_arena_concat(&a, "x-", "request", "-id", (const char *)NULL);
        assert_string_equal(c, "x-request-id");
        cmx_arena_reset(&a);
        assert_int_equal(n_order, 3);
        assert_int_equal(order[0], 2);
        assert_int_equal(order[2], 0);
    }
    /* more chunks at once than the cache keeps: the rest are freed (ASan checks) */
    for (int i = 0; i < 100; i++)
        assert_non_null(cmx_arena_alloc(&a, 6000));
    cmx_arena_reset(&a);
}

static void *thread_body(void *arg)
{
    (void)arg;
    struct cmx_arena a;
    cmx_arena_init(&a);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 8; i++)
            memset(cmx_arena_alloc(&a, 5000), 1, 5000);
        cmx_arena_reset(&a);
    }
    return NULL; /* the thread's cached chunks are freed as it exits (LeakSanitizer checks) */
}

static void test_threads_release_their_cache(void **state)
{
    (void)state;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, thread_body, NULL), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
}

/* The inline append and its slow path agree at every boundary: exactly full, growth, the
 * hard cap (nothing appended), and the NUL kept after the data. */
static void test_buf_append_boundaries(void **state)
{
    (void)state;
    struct cmx_buf b;
    cmx_buf_init(&b, 1000);
    char chunk[64];
    size_t want = 0;
    for (int i = 0; i < 40; i++) {
        size_t n = (size_t)(i % 23);
        memset(chunk, 'a' + i % 26, n);
        int rc = cmx_buf_append(&b, chunk, n);
        if (want + n > 1000) {
            assert_int_equal(rc, CMX_ETOOBIG);
            continue;
        }
        assert_int_equal(rc, 0);
        want += n;
        assert_int_equal(b.len, want);
        if (b.data != NULL)
            assert_int_equal(b.data[b.len], '\0');
    }
    /* fill exactly to the cap, then one byte more is refused */
    while (b.len < 1000)
        assert_int_equal(cmx_buf_append(&b, "z", 1), 0);
    assert_int_equal(b.len, 1000);
    assert_int_equal(cmx_buf_append(&b, "z", 1), CMX_ETOOBIG);
    assert_int_equal(b.len, 1000);
    assert_int_equal(b.data[1000], '\0');
    assert_int_equal(cmx_buf_append(&b, "", 0), 0);
    cmx_buf_free(&b);
    /* an empty buffer: the first append takes the slow path */
    cmx_buf_init(&b, 16);
    assert_int_equal(cmx_buf_append(&b, "0123456789abcdef", 16), 0);
    assert_string_equal(b.data, "0123456789abcdef");
    assert_int_equal(cmx_buf_append(&b, "x", 1), CMX_ETOOBIG);
    cmx_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_independence),
        cmocka_unit_test(test_cleanups_and_reuse),
        cmocka_unit_test(test_threads_release_their_cache),
        cmocka_unit_test(test_buf_append_boundaries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
