/* Unit tests for src/keys/keys.c: generation, base62, hashing, presentation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "keys/keys.h"

static void test_base62(void **state)
{
    (void)state;
    char out[64];
    unsigned char zero[32] = {0}, ff[32], one[2] = {0, 61}, big[2] = {0xff, 0xff};
    memset(ff, 0xff, sizeof(ff));

    cmx_base62_encode(zero, sizeof(zero), out, 43);
    out[43] = '\0';
    assert_string_equal(out, "0000000000000000000000000000000000000000000");
    cmx_base62_encode(one, sizeof(one), out, 3);
    out[3] = '\0';
    assert_string_equal(out, "00z");
    cmx_base62_encode(big, sizeof(big), out, 3); /* 65535 = 17*62^2 + 3*62 + 1 */
    out[3] = '\0';
    assert_string_equal(out, "H31");
    /* 2^256 - 1 needs all 43 digits and starts with a non-zero one */
    cmx_base62_encode(ff, sizeof(ff), out, 43);
    out[43] = '\0';
    assert_true(out[0] != '0');
    assert_string_equal(out, "yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1");
}

static void test_generate(void **state)
{
    (void)state;
    char a[CMX_KEY_TEXT_MAX + 1], b[CMX_KEY_TEXT_MAX + 1];
    char ha[CMX_KEY_HASH_HEX + 1], hb[CMX_KEY_HASH_HEX + 1], h[CMX_KEY_HASH_HEX + 1];
    char ida[CMX_KEY_ID_LEN + 1], idb[CMX_KEY_ID_LEN + 1];

    assert_int_equal(cmx_key_generate(a, ha, ida), 0);
    assert_int_equal(cmx_key_generate(b, hb, idb), 0);
    assert_int_equal(strlen(a), CMX_KEY_TEXT_MAX);
    assert_memory_equal(a, "cmx-", 4);
    assert_true(cmx_key_well_formed(a, strlen(a)));
    assert_string_not_equal(a, b);
    assert_string_not_equal(ha, hb);
    assert_string_not_equal(ida, idb);
    assert_int_equal(strlen(ida), CMX_KEY_ID_LEN);
    assert_memory_equal(ida, "key_", 4);
    cmx_key_hash(a, strlen(a), h);
    assert_string_equal(h, ha);
    /* the hash is not the key, and the key's text is not in the id */
    assert_null(strstr(ha, a + 4));
}

static void test_hash_vector(void **state)
{
    (void)state;
    char h[CMX_KEY_HASH_HEX + 1];
    cmx_key_hash("abc", 3, h); /* FIPS 180-2 */
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_headers(void **state)
{
    (void)state;
    const char *k = NULL;
    size_t n = 0;
#define AUTH(s) s, strlen(s)
    assert_true(cmx_key_from_headers(AUTH("Bearer cmx-abc"), NULL, 0, &k, &n));
    assert_int_equal(n, 7);
    assert_memory_equal(k, "cmx-abc", 7);
    assert_true(cmx_key_from_headers(AUTH("bearer   cmx-abc  "), NULL, 0, &k, &n));
    assert_int_equal(n, 7);
    assert_true(cmx_key_from_headers(NULL, 0, AUTH(" cmx-az "), &k, &n));
    assert_int_equal(n, 6);
    assert_memory_equal(k, "cmx-az", 6);
    /* Authorization wins over api-key */
    assert_true(cmx_key_from_headers(AUTH("Bearer one"), AUTH("two"), &k, &n));
    assert_memory_equal(k, "one", 3);
    /* a malformed Authorization falls back to api-key */
    assert_true(cmx_key_from_headers(AUTH("Basic dXNlcjpwYXNz"), AUTH("two"), &k, &n));
    assert_memory_equal(k, "two", 3);
    assert_false(cmx_key_from_headers(AUTH("Basic dXNlcjpwYXNz"), NULL, 0, &k, &n));
    assert_false(cmx_key_from_headers(AUTH("Bearer "), NULL, 0, &k, &n));
    assert_false(cmx_key_from_headers(AUTH("Bearer a b"), NULL, 0, &k, &n));
    assert_false(cmx_key_from_headers(NULL, 0, AUTH("   "), &k, &n));
    assert_false(cmx_key_from_headers(NULL, 0, NULL, 0, &k, &n));
#undef AUTH
}

static void test_well_formed(void **state)
{
    (void)state;
    char k[CMX_KEY_TEXT_MAX + 1], h[CMX_KEY_HASH_HEX + 1], id[CMX_KEY_ID_LEN + 1];
    assert_int_equal(cmx_key_generate(k, h, id), 0);
    assert_true(cmx_key_well_formed(k, CMX_KEY_TEXT_MAX));
    assert_false(cmx_key_well_formed(k, CMX_KEY_TEXT_MAX - 1));
    k[10] = '-';
    assert_false(cmx_key_well_formed(k, CMX_KEY_TEXT_MAX));
    assert_false(cmx_key_well_formed("sk-proj-abc", 11));
    assert_true(cmx_key_equal("abcdef", "abcdef", 6));
    assert_false(cmx_key_equal("abcdef", "abcdeg", 6));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base62),      cmocka_unit_test(test_generate),
        cmocka_unit_test(test_hash_vector), cmocka_unit_test(test_headers),
        cmocka_unit_test(test_well_formed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
