/* The upstream HTTP client, behind one ops struct so that a leaner client can replace
 * libcurl where the benchmark says so (curl's `struct Curl_ssl` pattern). One client
 * instance per worker loop; it owns that worker's connection pool. Every function and
 * callback runs on the worker's loop thread.
 *
 * Callback contract: on_headers once (final response only), then on_data zero or more
 * times, then on_done exactly once, unless the transfer is canceled first. After on_done
 * (or cancel) the transfer is gone. Callbacks may call cancel on their own transfer and may
 * start new transfers. */
#ifndef CMX_UPSTREAM_UPSTREAM_H
#define CMX_UPSTREAM_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "http/http.h"

struct cmx_upstream;
struct cmx_upstream_xfer;

struct cmx_upstream_request {
    const char *method;         /* "POST", "GET" */
    const char *url;            /* absolute http(s) URL */
    const char *const *headers; /* "Name: value" lines, n_headers of them */
    size_t n_headers;
    const char *body; /* may be NULL when body_len is 0; must outlive the xfer */
    size_t body_len;
    const char *ca_file;       /* extra CA bundle, NULL for the system's */
    int connect_timeout_ms;    /* TCP + TLS handshake */
    int first_byte_timeout_ms; /* request sent -> response headers */
    int idle_timeout_ms;       /* max silence between body bytes */
    int total_timeout_ms;      /* whole transfer; 0 = none */
    void *ud;                  /* passed to the callbacks */
    /* Final response head. Return non-zero to abort (then on_done gets CMX_ECANCELED). */
    int (*on_headers)(void *ud, int status, const struct cmx_http_header *h, size_t n);
    /* Body bytes as they arrive. Return non-zero to abort as above. */
    int (*on_data)(void *ud, const char *data, size_t len);
    /* End: 0 when the response was complete, else CMX_ECONNECT, CMX_ETLS, CMX_ETIMEOUT
     * (before the first byte: see first_byte), CMX_ERESET, CMX_EUPSTREAM, CMX_ECANCELED. */
    void (*on_done)(void *ud, int err, bool first_byte);
};

struct cmx_upstream_ops {
    const char *name;
    /* Creates a client on loop. 0 or an error. */
    int (*create)(uv_loop_t *loop, struct cmx_upstream **out);
    /* Starts a transfer; the request struct is copied, the strings it points to must stay
     * valid until on_done/cancel. 0 or an error (then no callback will come). */
    int (*start)(struct cmx_upstream *u, const struct cmx_upstream_request *req,
                 struct cmx_upstream_xfer **out);
    /* Cancels a transfer: no callback comes after this returns. */
    void (*cancel)(struct cmx_upstream_xfer *x);
    /* Pauses or resumes reading the response body (client backpressure). */
    void (*pause)(struct cmx_upstream_xfer *x, bool paused);
    /* Cancels everything and closes the client's handles; done(arg) runs once they are
     * closed (the loop must keep running until then). */
    void (*destroy)(struct cmx_upstream *u, void (*done)(void *), void *arg);
};

/* The libcurl multi_socket client (src/upstream/curl.c). */
extern const struct cmx_upstream_ops cmx_upstream_curl;

/* The lean HTTP/1.1 client (src/upstream/h1.c): plain http:// URLs on libuv TCP with a
 * per-instance keep-alive pool per host:port (LIFO, 60 s idle, 256 idle per key) and its own
 * DNS cache; https:// and anything else it does not handle (userinfo, odd URLs, or when
 * http_proxy/all_proxy is set) go to an embedded cmx_upstream_curl instance, transparently.
 * Same contract as above, plus: a reused connection that fails before any response byte is
 * retried once on a fresh one; the idle timeout does not run while paused; connect and
 * resolve failures, a connect timeout and total_timeout_ms expiring while connecting give
 * CMX_ECONNECT. One instance per worker loop, no locks. */
extern const struct cmx_upstream_ops cmx_upstream_h1;

/* Process-wide initialisation (curl_global_init). Call once before any thread starts. */
int cmx_upstream_global_init(void);

#endif
