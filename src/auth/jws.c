/* RS256 JWS on OpenSSL 3 (EVP_DigestSign; PKCS#1 v1.5 is deterministic, so the RFC 7520
 * §4.1 vector must come out byte for byte: tests/unit/test_jws.c). */
#include "auth/jws.h"
#include "core/err.h"

#include <json-c/json.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char b64u_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
static const char b64_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int encode(struct cmx_buf *out, const void *data, size_t n, const char *alpha, bool pad)
{
    const unsigned char *p = data;
    char *w = cmx_buf_reserve(out, (n + 2) / 3 * 4 + 1);
    if (w == NULL)
        return CMX_ENOMEM;
    size_t k = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        w[k++] = alpha[v >> 18 & 63];
        w[k++] = alpha[v >> 12 & 63];
        w[k++] = alpha[v >> 6 & 63];
        w[k++] = alpha[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        w[k++] = alpha[v >> 18 & 63];
        w[k++] = alpha[v >> 12 & 63];
        if (pad) {
            w[k++] = '=';
            w[k++] = '=';
        }
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        w[k++] = alpha[v >> 18 & 63];
        w[k++] = alpha[v >> 12 & 63];
        w[k++] = alpha[v >> 6 & 63];
        if (pad)
            w[k++] = '=';
    }
    cmx_buf_commit(out, k);
    return 0;
}

int cmx_b64url_encode(struct cmx_buf *out, const void *p, size_t n)
{
    return encode(out, p, n, b64u_alpha, false);
}

int cmx_b64_encode(struct cmx_buf *out, const void *p, size_t n)
{
    return encode(out, p, n, b64_alpha, true);
}

int cmx_b64url_decode(struct cmx_buf *out, const char *s, size_t n)
{
    while (n > 0 && s[n - 1] == '=')
        n--;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *c = s[i] != '\0' ? strchr(b64u_alpha, s[i]) : NULL;
        if (c == NULL) {
            /* accept the standard alphabet too */
            if (s[i] == '+')
                c = b64u_alpha + 62;
            else if (s[i] == '/')
                c = b64u_alpha + 63;
            else
                return CMX_EINVAL;
        }
        acc = acc << 6 | (unsigned)(c - b64u_alpha);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            unsigned char b = (unsigned char)(acc >> bits);
            if (cmx_buf_append(out, &b, 1) != 0)
                return CMX_ENOMEM;
        }
    }
    return 0;
}

int cmx_jws_rs256_sign_input(EVP_PKEY *key, const char *input, size_t len, struct cmx_buf *out)
{
    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA)
        return CMX_EINVAL;
    int rc = CMX_EINTERNAL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *sig = NULL;
    size_t sl = 0;
    if (md == NULL)
        return CMX_ENOMEM;
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &sl, (const unsigned char *)input, len) != 1)
        goto out_free_md;
    sig = OPENSSL_malloc(sl);
    if (sig == NULL) {
        rc = CMX_ENOMEM;
        goto out_free_md;
    }
    if (EVP_DigestSign(md, sig, &sl, (const unsigned char *)input, len) != 1)
        goto out_free_sig;
    rc = cmx_b64url_encode(out, sig, sl);
out_free_sig:
    OPENSSL_free(sig);
out_free_md:
    EVP_MD_CTX_free(md);
    return rc;
}

int cmx_jws_rs256_compact(EVP_PKEY *key, const char *header_json, const char *payload_json,
                          struct cmx_buf *out)
{
    cmx_buf_reset(out);
    if (cmx_b64url_encode(out, header_json, strlen(header_json)) || cmx_buf_puts(out, ".") ||
        cmx_b64url_encode(out, payload_json, strlen(payload_json)))
        return CMX_ENOMEM;
    /* the signature is appended to the buffer that holds its own input: sign a copy */
    size_t in_len = out->len;
    char *in = malloc(in_len);
    if (in == NULL)
        return CMX_ENOMEM;
    memcpy(in, out->data, in_len);
    int r = cmx_buf_puts(out, ".");
    if (r == 0)
        r = cmx_jws_rs256_sign_input(key, in, in_len, out);
    free(in);
    return r;
}

int cmx_jws_key_from_pem(const char *pem, size_t len, EVP_PKEY **out)
{
    *out = NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL)
        return CMX_ENOMEM;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (k == NULL)
        return CMX_EINVAL;
    if (EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
        EVP_PKEY_free(k);
        return CMX_EINVAL;
    }
    *out = k;
    return 0;
}

/* A JWK member as a big number (base64url big-endian). NULL when absent or bad. */
static BIGNUM *jwk_bn(json_object *o, const char *name)
{
    json_object *v;
    if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 16);
    BIGNUM *bn = NULL;
    if (cmx_b64url_decode(&b, json_object_get_string(v), (size_t)json_object_get_string_len(v)) ==
            0 &&
        b.len > 0)
        bn = BN_bin2bn((const unsigned char *)b.data, (int)b.len, NULL);
    cmx_buf_free(&b);
    return bn;
}

int cmx_jws_key_from_jwk(const char *json, size_t len, EVP_PKEY **out)
{
    static const char *const names[] = {"n", "e", "d", "p", "q", "dp", "dq", "qi"};
    static const char *const params[] = {
        OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
        OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
        OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
    BIGNUM *bn[8] = {0};
    int rc = CMX_EINVAL;
    *out = NULL;
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return CMX_ENOMEM;
    json_object *o = json_tokener_parse_ex(tok, json, (int)len);
    json_tokener_free(tok);
    if (o == NULL || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return CMX_EJSON;
    }
    json_object *kty;
    if (!json_object_object_get_ex(o, "kty", &kty) ||
        strcmp(json_object_get_string(kty) ? json_object_get_string(kty) : "", "RSA") != 0)
        goto out_put;
    size_t n = 0;
    for (; n < 8; n++) {
        bn[n] = jwk_bn(o, names[n]);
        if (bn[n] == NULL)
            break;
    }
    if (n < 3 || (n > 3 && n < 8))
        goto out_bn;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld == NULL)
        goto out_bn;
    for (size_t i = 0; i < n; i++)
        OSSL_PARAM_BLD_push_BN(bld, params[i], bn[i]);
    OSSL_PARAM *ps = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *k = NULL;
    if (ps != NULL && pc != NULL && EVP_PKEY_fromdata_init(pc) == 1 &&
        EVP_PKEY_fromdata(pc, &k, EVP_PKEY_KEYPAIR, ps) == 1) {
        *out = k;
        rc = 0;
    }
    EVP_PKEY_CTX_free(pc);
    OSSL_PARAM_free(ps);
    OSSL_PARAM_BLD_free(bld);
out_bn:
    for (size_t i = 0; i < 8; i++)
        BN_free(bn[i]);
out_put:
    json_object_put(o);
    return rc;
}
