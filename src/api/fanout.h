/* Fan-out: one attempt sent as several upstream requests to the same deployment (a batch
 * the upstream takes one piece at a time, e.g. Titan embeddings), at most `concurrency` in
 * flight, answers kept in part order. The first part that fails ends the whole fan-out:
 * the others are canceled and the failure is reported as the attempt's failure. Runs on
 * the worker loop; memory of the results lives until cmx_fanout_free(). */
#ifndef CMX_API_FANOUT_H
#define CMX_API_FANOUT_H

#include <stdbool.h>
#include <stddef.h>

#include "providers/provider.h"
#include "upstream/upstream.h"

struct cmx_fanout;

/* How the fan-out ended. On failure the fields describe the failing part. */
struct cmx_fanout_result {
    int err;                               /* transport error (CMX_E*), 0 when HTTP answered */
    int status;                            /* HTTP status (2xx: every part succeeded) */
    const struct cmx_http_header *headers; /* response headers of the failing part (arena) */
    size_t n_headers;
    const char *body; /* its body (valid until cmx_fanout_free) */
    size_t len;
};

typedef void (*cmx_fanout_done_cb)(void *ud, const struct cmx_fanout_result *r);

/* Starts n part requests (strings must outlive the fan-out) with the timeouts, CA file of
 * tmpl (its method/url/headers/body/callbacks are ignored). done runs exactly once, later,
 * unless cmx_fanout_free() comes first. Returns 0 and *out, or an error (nothing started,
 * no callback). */
int cmx_fanout_start(const struct cmx_upstream_ops *ops, struct cmx_upstream *up,
                     struct cmx_arena *a, const struct cmx_upstream_request *tmpl,
                     const struct cmx_provider_req *parts, size_t n, size_t concurrency,
                     cmx_fanout_done_cb done, void *ud, struct cmx_fanout **out);

/* The n answers in part order, valid after a successful done and until free. */
const struct cmx_part_answer *cmx_fanout_answers(const struct cmx_fanout *f);

/* Cancels what still runs (no callback afterwards) and frees the bodies. NULL is ignored. */
void cmx_fanout_free(struct cmx_fanout *f);

#endif
