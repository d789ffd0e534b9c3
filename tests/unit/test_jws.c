/* RS256 JWS: the RFC 7520 §4.1 vector (ietf-jose cookbook) reproduced byte for byte, a
 * round trip through a PEM key, and base64url edge cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/pem.h>

#include "auth/jws.h"
#include "core/err.h"

#define VEC       "/work/shared/specs/testvectors/jose-rs256/4_1.rsa_v15_signature.json"
#define VEC_LOCAL "tests/fixtures/jose-rs256/4_1.rsa_v15_signature.json"

static json_object *load_vector(void)
{
    json_object *o = json_object_from_file(VEC_LOCAL);
    if (o == NULL)
        o = json_object_from_file(VEC);
    return o;
}

static const char *str_at(json_object *o, const char *a, const char *b)
{
    json_object *x, *y;
    assert_true(json_object_object_get_ex(o, a, &x));
    assert_true(json_object_object_get_ex(x, b, &y));
    return json_object_get_string(y);
}

static void test_rfc7520_4_1(void **state)
{
    json_object *v = load_vector();
    assert_non_null(v);
    json_object *input, *key;
    assert_true(json_object_object_get_ex(v, "input", &input));
    assert_true(json_object_object_get_ex(input, "key", &key));
    const char *jwk = json_object_to_json_string(key);
    EVP_PKEY *k = NULL;
    assert_int_equal(cmx_jws_key_from_jwk(jwk, strlen(jwk), &k), 0);

    /* signing input: the vector's own header bytes and the payload */
    const char *sig_input = str_at(v, "signing", "sig-input");
    struct cmx_buf sig;
    cmx_buf_init(&sig, 1u << 20);
    assert_int_equal(cmx_jws_rs256_sign_input(k, sig_input, strlen(sig_input), &sig), 0);
    assert_int_equal(sig.len, strlen(str_at(v, "signing", "sig")));
    assert_memory_equal(sig.data, str_at(v, "signing", "sig"), sig.len);

    /* the payload encodes as in the vector (UTF-8 apostrophes, no padding) */
    const char *payload;
    json_object *pl;
    assert_true(json_object_object_get_ex(input, "payload", &pl));
    payload = json_object_get_string(pl);
    struct cmx_buf c;
    cmx_buf_init(&c, 1u << 20);
    assert_int_equal(
        cmx_jws_rs256_compact(k, "{\"alg\":\"RS256\",\"kid\":\"bilbo.baggins@hobbiton.example\"}",
                              payload, &c),
        0);
    const char *compact = str_at(v, "output", "compact");
    assert_int_equal(c.len, strlen(compact));
    assert_memory_equal(c.data, compact, c.len);
    cmx_buf_free(&c);
    cmx_buf_free(&sig);
    EVP_PKEY_free(k);
    json_object_put(v);
}

static void test_pem_roundtrip_and_verify(void **state)
{
    json_object *v = load_vector();
    assert_non_null(v);
    json_object *input, *key;
    json_object_object_get_ex(v, "input", &input);
    json_object_object_get_ex(input, "key", &key);
    const char *jwk = json_object_to_json_string(key);
    EVP_PKEY *k = NULL;
    assert_int_equal(cmx_jws_key_from_jwk(jwk, strlen(jwk), &k), 0);
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    char *pem;
    long pl = BIO_get_mem_data(b, &pem);
    EVP_PKEY *k2 = NULL;
    assert_int_equal(cmx_jws_key_from_pem(pem, (size_t)pl, &k2), 0);
    struct cmx_buf s1, s2;
    cmx_buf_init(&s1, 1u << 16);
    cmx_buf_init(&s2, 1u << 16);
    assert_int_equal(cmx_jws_rs256_sign_input(k, "abc.def", 7, &s1), 0);
    assert_int_equal(cmx_jws_rs256_sign_input(k2, "abc.def", 7, &s2), 0);
    assert_int_equal(s1.len, s2.len);
    assert_memory_equal(s1.data, s2.data, s1.len);
    /* decode the signature and verify it with OpenSSL */
    struct cmx_buf raw;
    cmx_buf_init(&raw, 1u << 16);
    assert_int_equal(cmx_b64url_decode(&raw, s1.data, s1.len), 0);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k2), 1);
    assert_int_equal(EVP_DigestVerify(md, (unsigned char *)raw.data, raw.len,
                                      (const unsigned char *)"abc.def", 7),
                     1);
    assert_int_not_equal(EVP_DigestVerify(md, (unsigned char *)raw.data, raw.len,
                                          (const unsigned char *)"abc.deg", 7),
                         1);
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(k2);
    assert_int_equal(cmx_jws_key_from_pem("garbage", 7, &k2 /* left NULL */), CMX_EINVAL);
    assert_null(k2);
    cmx_buf_free(&raw);
    cmx_buf_free(&s1);
    cmx_buf_free(&s2);
    BIO_free(b);
    EVP_PKEY_free(k);
    json_object_put(v);
}

static void test_b64(void **state)
{
    static const struct {
        const char *in, *url, *std;
    } t[] = {{"", "", ""},
             {"f", "Zg", "Zg=="},
             {"fo", "Zm8", "Zm8="},
             {"foo", "Zm9v", "Zm9v"},
             {"\xfb\xff", "-_8", "+/8="}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct cmx_buf b;
        cmx_buf_init(&b, 1024);
        assert_int_equal(cmx_b64url_encode(&b, t[i].in, strlen(t[i].in)), 0);
        assert_int_equal(b.len, strlen(t[i].url));
        if (b.len)
            assert_memory_equal(b.data, t[i].url, b.len);
        cmx_buf_reset(&b);
        assert_int_equal(cmx_b64_encode(&b, t[i].in, strlen(t[i].in)), 0);
        assert_int_equal(b.len, strlen(t[i].std));
        if (b.len)
            assert_memory_equal(b.data, t[i].std, b.len);
        cmx_buf_reset(&b);
        assert_int_equal(cmx_b64url_decode(&b, t[i].url, strlen(t[i].url)), 0);
        assert_int_equal(b.len, strlen(t[i].in));
        if (b.len)
            assert_memory_equal(b.data, t[i].in, b.len);
        cmx_buf_free(&b);
    }
    struct cmx_buf b;
    cmx_buf_init(&b, 1024);
    assert_int_equal(cmx_b64url_decode(&b, "a*b", 3), CMX_EINVAL);
    cmx_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7520_4_1),
        cmocka_unit_test(test_pem_roundtrip_and_verify),
        cmocka_unit_test(test_b64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
