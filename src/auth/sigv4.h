/* AWS Signature Version 4 (header signing) on OpenSSL, for Bedrock and any other AWS
 * service: canonical request, string to sign, signing key, Authorization header.
 *
 * Why our own: curl's CURLOPT_AWS_SIGV4 encodes the canonical URI once, so a Bedrock
 * model id with ':' (sent as %3A) is signed as %3A where AWS expects %253A, and it signs
 * headers it never sends. Here the caller names exactly the headers that go on the wire,
 * and the path is encoded again as every non-S3 service requires.
 *
 * The clock is an input (now_ms): callers read cmx_clock_now_ms() (core/clock.h), which
 * `serve --now` and tests can pin. Pure functions, any thread. */
#ifndef CMX_AUTH_SIGV4_H
#define CMX_AUTH_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"

struct cmx_sigv4_creds {
    const char *access_key_id;     /* AKID...; required */
    const char *secret_access_key; /* secret; required; never logged */
    const char *session_token;     /* temporary credentials; NULL when none */
};

struct cmx_sigv4_header {
    const char *name; /* any case; need not be NUL-terminated */
    size_t name_len;
    const char *value; /* as sent; trimmed and space-collapsed for signing */
    size_t value_len;
};

struct cmx_sigv4_req {
    const char *method;                     /* "POST" */
    const char *path;                       /* as sent on the wire (already %-encoded) */
    size_t path_len;                        /* 0 means "/" */
    const char *query;                      /* after '?', raw; NULL when none */
    size_t query_len;                       /* its length */
    const struct cmx_sigv4_header *headers; /* headers sent and signed; must include host */
    size_t n_headers;                       /* their number */
    const char *payload;                    /* body (NULL with payload_len 0) */
    size_t payload_len;                     /* its length */
    const char *region;                     /* "us-east-1" */
    const char *service;                    /* "bedrock" */
    uint64_t now_ms;                        /* signing time, UTC ms since the epoch */
    bool normalize_path;   /* remove "." / ".." segments and empty segments (non-S3) */
    bool omit_token;       /* the caller adds x-amz-security-token after signing */
    bool content_sha256;   /* also sign (and send) x-amz-content-sha256 */
    bool no_double_encode; /* S3 rule: the path is not encoded again */
};

struct cmx_sigv4_out {
    char amz_date[17];       /* X-Amz-Date value, "20150830T123600Z" */
    char payload_hash[65];   /* hex SHA-256 of the payload (x-amz-content-sha256) */
    char signature[65];      /* hex signature */
    char *authorization;     /* whole Authorization header value (arena) */
    char *canonical_request; /* arena, for tests and debugging (no secret in it) */
    char *string_to_sign;    /* arena */
    const char *extra[3];    /* "Name: value" lines the caller must send besides its own
                              * headers: x-amz-date, [x-amz-security-token],
                              * [x-amz-content-sha256] (arena); unused slots NULL */
    size_t n_extra;          /* used slots of extra */
};

/* Signs r with c. Headers the caller already lists (x-amz-date, x-amz-security-token,
 * x-amz-content-sha256) are signed as given and not repeated in out->extra. Returns 0,
 * CMX_EINVAL (no credentials / region / service / host header) or CMX_ENOMEM. Everything in
 * out lives in a. */
int cmx_sigv4_sign(const struct cmx_sigv4_req *r, const struct cmx_sigv4_creds *c,
                   struct cmx_arena *a, struct cmx_sigv4_out *out);

/* Appends the SigV4 URI encoding of s (RFC 3986 unreserved kept, everything else %XX upper
 * case; '/' kept when keep_slash) to dst, NUL-terminated, at most cap bytes with the NUL.
 * Returns the length written, or (size_t)-1 when it does not fit. Used to put model ids in
 * Bedrock paths. */
size_t cmx_sigv4_uri_encode(const char *s, size_t len, bool keep_slash, char *dst, size_t cap);

#endif
