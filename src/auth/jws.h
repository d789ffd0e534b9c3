/* JSON Web Signature, compact serialization, RS256 only (RSASSA-PKCS1-v1_5 with SHA-256,
 * RFC 7515/7518) on OpenSSL: what the Google service-account flow needs to sign its JWT
 * assertion. Base64url here is RFC 4648 §5 without padding. */
#ifndef CMX_AUTH_JWS_H
#define CMX_AUTH_JWS_H

#include <stddef.h>

#include <openssl/evp.h>

#include "core/buf.h"

/* Appends the unpadded base64url encoding of p[0..n) to out. 0 or CMX_ENOMEM/CMX_ETOOBIG. */
int cmx_b64url_encode(struct cmx_buf *out, const void *p, size_t n);

/* Decodes unpadded (or padded) base64url s[0..n) into out (appended). 0, CMX_EINVAL on a
 * character outside the alphabet, or CMX_ENOMEM. */
int cmx_b64url_decode(struct cmx_buf *out, const char *s, size_t n);

/* Appends the standard base64 (with padding) encoding of p[0..n) to out. 0 or CMX_ENOMEM. */
int cmx_b64_encode(struct cmx_buf *out, const void *p, size_t n);

/* Signs input[0..len) with RS256 under key (an RSA private key; not consumed) and appends
 * the base64url signature to out. 0, CMX_EINVAL (not an RSA key) or CMX_EINTERNAL. */
int cmx_jws_rs256_sign_input(EVP_PKEY *key, const char *input, size_t len, struct cmx_buf *out);

/* Builds the compact JWS "b64u(header).b64u(payload).b64u(sig)" into out (reset first).
 * header_json and payload_json are taken as given (the caller chose their bytes).
 * 0 or an error as above. */
int cmx_jws_rs256_compact(EVP_PKEY *key, const char *header_json, const char *payload_json,
                          struct cmx_buf *out);

/* Reads a PEM private key (PKCS#8 "BEGIN PRIVATE KEY" or PKCS#1) from pem[0..len).
 * *out is owned by the caller (EVP_PKEY_free). 0 or CMX_EINVAL. */
int cmx_jws_key_from_pem(const char *pem, size_t len, EVP_PKEY **out);

/* Builds an RSA private key from a JWK's JSON text (kty RSA with n, e, d and, when present,
 * p, q, dp, dq, qi). *out is owned by the caller. 0, CMX_EJSON or CMX_EINVAL. */
int cmx_jws_key_from_jwk(const char *json, size_t len, EVP_PKEY **out);

#endif
