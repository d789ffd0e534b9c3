/* Unit tests for src/keys/registry.c: snapshots, lookups, revocation, expiry, publishing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "keys/registry.h"

#define N 200

static char texts[N][CMX_KEY_TEXT_MAX + 1];
static struct cmx_key_rec recs[N];

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i < N; i++) {
        memset(&recs[i], 0, sizeof(recs[i]));
        if (cmx_key_generate(texts[i], recs[i].hash, recs[i].id) != 0)
            return -1;
        snprintf(recs[i].tenant, sizeof(recs[i].tenant), "t%d", i % 3);
        recs[i].expires_ms = recs[i].revoked_ms = recs[i].budget_micros = -1;
    }
    return 0;
}

static void test_lookup(void **state)
{
    (void)state;
    const struct cmx_key_rec *r;
    recs[5].revoked_ms = 1000;
    recs[6].expires_ms = 2000;
    struct cmx_key_set *s = cmx_key_set_new(recs, N);
    assert_non_null(s);
    assert_int_equal(s->n, N);
    for (int i = 0; i < N; i++) {
        enum cmx_key_verdict v = cmx_key_set_check(s, texts[i], strlen(texts[i]), 1500, &r);
        assert_int_equal(v, i == 5 ? CMX_KEY_REVOKED : CMX_KEY_OK);
        assert_string_equal(r->id, recs[i].id);
    }
    /* the expiry instant is the first one the key no longer works (a JWT's exp; creation
     * refuses an expiry that is not in the future) */
    assert_int_equal(cmx_key_set_check(s, texts[6], strlen(texts[6]), 1999, &r), CMX_KEY_OK);
    assert_int_equal(cmx_key_set_check(s, texts[6], strlen(texts[6]), 2000, &r), CMX_KEY_EXPIRED);
    /* a near miss, another shape, an empty set */
    char wrong[CMX_KEY_TEXT_MAX + 1];
    memcpy(wrong, texts[0], sizeof(wrong));
    wrong[20] = wrong[20] == 'a' ? 'b' : 'a';
    assert_int_equal(cmx_key_set_check(s, wrong, strlen(wrong), 0, &r), CMX_KEY_UNKNOWN);
    assert_null(r);
    assert_int_equal(cmx_key_set_check(s, "sk-abc", 6, 0, &r), CMX_KEY_UNKNOWN);
    assert_int_equal(cmx_key_set_check(s, texts[0], 10, 0, &r), CMX_KEY_UNKNOWN);
    struct cmx_key_set *empty = cmx_key_set_new(NULL, 0);
    assert_int_equal(cmx_key_set_check(empty, texts[0], strlen(texts[0]), 0, &r), CMX_KEY_UNKNOWN);
    assert_int_equal(cmx_key_set_check(NULL, texts[0], strlen(texts[0]), 0, &r), CMX_KEY_UNKNOWN);
    cmx_key_set_unref(empty);
    cmx_key_set_unref(s);
    recs[5].revoked_ms = recs[6].expires_ms = -1;
}

static void test_duplicates_later_wins(void **state)
{
    (void)state;
    const struct cmx_key_rec *r;
    struct cmx_key_rec two[3] = {recs[0], recs[1], recs[0]};
    two[2].revoked_ms = 7; /* the same key, revoked later in the list */
    struct cmx_key_set *s = cmx_key_set_new(two, 3);
    assert_int_equal(s->n, 2);
    assert_int_equal(cmx_key_set_check(s, texts[0], strlen(texts[0]), 0, &r), CMX_KEY_REVOKED);
    assert_int_equal(cmx_key_set_check(s, texts[1], strlen(texts[1]), 0, &r), CMX_KEY_OK);
    cmx_key_set_unref(s);
}

static atomic_int stop;

static void *reader(void *arg)
{
    (void)arg;
    long seen = 0;
    while (!atomic_load(&stop)) {
        struct cmx_key_set *s = cmx_keys_acquire();
        const struct cmx_key_rec *r;
        if (s != NULL) {
            /* key 0 is in every published set */
            if (cmx_key_set_check(s, texts[0], strlen(texts[0]), 0, &r) != CMX_KEY_OK)
                return (void *)-1;
            seen++;
        }
        cmx_key_set_unref(s);
    }
    return (void *)seen;
}

static void test_publish_under_readers(void **state)
{
    (void)state;
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, reader, NULL);
    for (int round = 1; round <= 2000; round++)
        cmx_keys_publish(cmx_key_set_new(recs, (size_t)(1 + round % N)));
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) {
        void *ret;
        pthread_join(th[i], &ret);
        assert_true((long)ret >= 0);
    }
    struct cmx_key_set *s = cmx_keys_acquire();
    assert_int_equal(s->n, 1 + 2000 % N);
    cmx_key_set_unref(s);
    cmx_keys_publish(NULL);
    assert_null(cmx_keys_acquire());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_duplicates_later_wins),
        cmocka_unit_test(test_publish_under_readers),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
