/* Retry rules shared by every provider: which outcomes are worth another attempt, and how
 * long to wait before it (exponential backoff with full jitter, unless the upstream said
 * how long with retry-after-ms / retry-after / x-should-retry, as OpenAI's SDKs honour). */
#ifndef CMX_ROUTER_RETRY_H
#define CMX_ROUTER_RETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

/* True for statuses another attempt may fix: 408, 409, 429, 500, 502, 503, 504, 529. */
bool cmx_retry_status(int status);

/* What the upstream's headers say about retrying. */
struct cmx_retry_hint {
    int64_t after_ms; /* requested delay, -1 when none was given */
    int should;       /* x-should-retry: 1 true, 0 false, -1 absent */
};

/* Reads retry-after-ms (milliseconds, may be fractional), then retry-after (seconds or an
 * HTTP-date, relative to now_unix_ms), and x-should-retry. Never fails. */
void cmx_retry_hint_parse(const struct cmx_http_header *h, size_t n, uint64_t now_unix_ms,
                          struct cmx_retry_hint *out);

/* Full-jitter exponential backoff: a uniform value in [0, min(cap, base * 2^(attempt-1))]
 * drawn from rnd. attempt >= 1. */
uint64_t cmx_backoff_ms(int attempt, uint64_t base_ms, uint64_t cap_ms, uint64_t rnd);

/* Parses an HTTP-date (RFC 7231 IMF-fixdate, RFC 850 and asctime forms) into Unix
 * milliseconds. 0 or CMX_EINVAL. */
int cmx_http_date_parse(const char *s, uint64_t *unix_ms);

#endif
