/* Google OAuth2 access tokens for a service account (the "JWT bearer" flow): a JWT signed
 * RS256 with the key's private_key_id as kid, claims iss = client_email, scope
 * cloud-platform, aud = token_uri, iat, exp = iat + 3600, exchanged at token_uri for an
 * access token.
 *
 * One cache entry per credentials file, process-wide and shared by every worker (a mutex
 * guards it). A token is refreshed before it expires: past the refresh point (5 minutes
 * before expiry, or half its lifetime when shorter) the next user starts one background
 * refresh and keeps using the current token; only when no usable token is left do
 * requests wait, all of them on the same single in-flight exchange (no thundering herd).
 * The exchange runs through the upstream client of the worker that started it; waiters on
 * other workers are woken with a uv_async on their own loop. The key file is looked at again
 * at most once a minute: a rotated key (new modification time or size) replaces the old one
 * and its token. */
#ifndef CMX_AUTH_GCP_TOKEN_H
#define CMX_AUTH_GCP_TOKEN_H

#include <stdbool.h>
#include <stdint.h>

#include "core/arena.h"
#include "providers/provider.h"

/* Reads and validates a service-account key file (type, client_email, private_key that
 * parses as RSA, token_uri). 0, or an error with *why set to a static message. Any thread. */
int cmx_gcp_credentials_check(const char *path, const char **why);

/* Makes sure a usable token for the key file at path is cached. Returns 0 when one is
 * (build may call cmx_gcp_token_copy now), 1 when done(ud, err) will be called later on
 * the caller's loop (unless cmx_gcp_token_cancel(*pending) comes first), or an error
 * (CMX_EIO/CMX_EINVAL: the key file is unusable). Worker thread. */
int cmx_gcp_token_acquire(const char *path, const struct cmx_prepare_env *env,
                          cmx_prepare_done_cb done, void *ud, void **pending);

/* Cancels a pending acquire: its callback never comes. Same thread as the acquire. */
void cmx_gcp_token_cancel(void *pending);

/* Copies the cached token for path into a, or NULL when there is no usable one. */
char *cmx_gcp_token_copy(const char *path, struct cmx_arena *a);

/* What to do with a cached token at now (all Unix ms): 0 use it, 1 use it and start a
 * background refresh, 2 wait for a new one. Exposed for the unit tests. */
int cmx_gcp_token_policy(uint64_t now, uint64_t obtained, uint64_t expires);

/* Builds the signed assertion for the key file at path at time now_s into out (reset).
 * 0 or an error. Exposed for the unit tests. */
int cmx_gcp_assertion(const char *path, int64_t now_s, struct cmx_buf *out);

/* Replaces the wall clock (Unix ms) used for expiry and iat; NULL restores it. For tests
 * only; not thread-safe against concurrent acquires. */
void cmx_gcp_token_set_clock(uint64_t (*fn)(void));

#endif
