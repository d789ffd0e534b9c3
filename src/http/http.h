/* The HTTP/1.1 front end, behind a small interface: the rest of cloudmux sees requests
 * (method, path, headers, whole body) and answers them with a complete response or a
 * chunked stream. The parser (http-parser) and the socket handling (libuv) stay inside
 * src/http/ so either can be replaced without touching the handlers.
 *
 * Threading: a server and its connections belong to one worker loop; every function here
 * must be called on that loop's thread. */
#ifndef CMX_HTTP_HTTP_H
#define CMX_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/arena.h"
#include "core/buf.h"

enum cmx_http_method {
    CMX_HTTP_OTHER = 0,
    CMX_HTTP_GET,
    CMX_HTTP_HEAD,
    CMX_HTTP_POST,
    CMX_HTTP_PUT,
    CMX_HTTP_DELETE,
    CMX_HTTP_PATCH,
    CMX_HTTP_OPTIONS,
};

struct cmx_http_header {
    const char *name; /* NUL-terminated; request header names are lower-cased */
    size_t name_len;
    const char *value; /* NUL-terminated, surrounding whitespace trimmed */
    size_t value_len;
};

struct cmx_http_conn;
struct cmx_http_server;
struct cmx_http_req;

/* Called once per complete request (headers and body). The handler must eventually answer
 * with cmx_http_respond() or cmx_http_stream_start()/..._end(), now or later. */
typedef void (*cmx_http_handler_cb)(struct cmx_http_req *req, void *ud);

/* Called instead of the handler for a request the server itself refuses (413, 431, 417, 408,
 * 400 invalid_http: code and message say why; the request's method, path and headers hold
 * what was read). It must answer with cmx_http_respond() at once; the connection closes
 * after it. */
typedef void (*cmx_http_reject_cb)(struct cmx_http_req *req, int status, const char *code,
                                   const char *message, void *ud);

/* Called when the client went away (or the server is forced down) before the answer was
 * finished. After it returns the request is gone: the handler must drop every reference to
 * it and cancel what it started for it. */
typedef void (*cmx_http_abort_cb)(struct cmx_http_req *req);

/* Called when the bytes queued for the client fell below the low-water mark again (see
 * cmx_http_stream_write), so a paused upstream can resume. */
typedef void (*cmx_http_drain_cb)(struct cmx_http_req *req);

struct cmx_http_req {
    struct cmx_arena arena;      /* everything of this request; reset when it ends */
    struct cmx_http_conn *conn;  /* the connection it arrived on */
    enum cmx_http_method method; /* parsed method */
    const char *method_name;     /* e.g. "POST" */
    const char *path;            /* path without the query, NUL-terminated */
    size_t path_len;
    const char *query;               /* text after '?', NUL-terminated, "" when none */
    struct cmx_http_header *headers; /* n_headers entries, in arrival order */
    size_t n_headers;
    struct cmx_buf body;                  /* the whole request body (chunked bodies decoded) */
    bool keep_alive;                      /* the connection may serve another request after */
    uint64_t start_ns;                    /* uv_hrtime() when the request's first byte came */
    struct cmx_http_header *resp_headers; /* extra response headers (cmx_http_add_header) */
    size_t n_resp_headers;
    size_t cap_resp_headers;
    int status;                 /* status sent (0 until the head is out) */
    uint64_t bytes_sent;        /* body bytes sent so far */
    bool streaming;             /* head sent with chunked/close-delimited body */
    bool finished;              /* the answer is complete */
    cmx_http_abort_cb on_abort; /* set by the handler while it works asynchronously */
    cmx_http_drain_cb on_drain; /* set by the handler to learn when the client caught up */
    void *data;                 /* for the handler */
};

struct cmx_http_limits {
    size_t max_header_bytes;  /* request line + headers; 431 beyond */
    size_t max_body_bytes;    /* request body; 413 beyond */
    int header_timeout_ms;    /* first byte of a request to the end of its headers; 408 */
    int body_timeout_ms;      /* silence while reading a body; 408 */
    int keepalive_timeout_ms; /* idle keep-alive connection is closed after this */
};

/* Creates a server on loop listening on host:port with SO_REUSEPORT (so every worker can
 * bind the same address). handler(req, ud) runs for each request. Returns 0 or a negative
 * libuv/cmx error; *out is owned by the caller and freed by cmx_http_server_close(). */
int cmx_http_server_start(uv_loop_t *loop, const char *host, int port,
                          const struct cmx_http_limits *limits, cmx_http_handler_cb handler,
                          void *ud, struct cmx_http_server **out);

/* Routes the server's own refusals to reject (with the server's ud) instead of its built-in
 * OpenAI-shaped answer, so that they are logged and counted like every other request. */
void cmx_http_server_on_reject(struct cmx_http_server *s, cmx_http_reject_cb reject);

/* Starts a graceful stop: closes the listener, closes idle connections, and lets every
 * in-flight request finish (their connections close after the answer). done_cb runs once
 * no connection is left. */
void cmx_http_server_drain(struct cmx_http_server *s, void (*done_cb)(void *), void *arg);

/* Aborts every remaining connection (their requests get on_abort) and frees the server
 * once all handles are closed. Call after drain (or instead of it) on the loop thread. */
void cmx_http_server_close(struct cmx_http_server *s);

/* Number of requests currently being handled on this server. */
size_t cmx_http_server_inflight(const struct cmx_http_server *s);

/* True when the request's connection comes from a loopback address (127.0.0.0/8, ::1). */
bool cmx_http_peer_is_loopback(const struct cmx_http_req *req);

/* Returns the first request header named name (lower-case), or NULL. */
const struct cmx_http_header *cmx_http_find_header(const struct cmx_http_req *req,
                                                   const char *name);

/* Adds a response header for the coming answer; name and value are copied into the
 * request arena. 0 or CMX_ENOMEM. */
int cmx_http_add_header(struct cmx_http_req *req, const char *name, const char *value);

/* Sends a complete answer with Content-Length and finishes the request. body may be NULL
 * when len is 0. content_type NULL means no Content-Type. HEAD requests get no body. */
void cmx_http_respond(struct cmx_http_req *req, int status, const char *content_type,
                      const char *body, size_t len);

/* Sends the head of a streamed answer (chunked for HTTP/1.1, close-delimited for 1.0). */
void cmx_http_stream_start(struct cmx_http_req *req, int status, const char *content_type);

/* Queues len bytes of a streamed answer for the client. Returns the number of bytes now
 * queued and not yet written; above CMX_HTTP_HIGH_WATER the caller should pause its
 * source until on_drain. */
size_t cmx_http_stream_write(struct cmx_http_req *req, const char *data, size_t len);

#define CMX_HTTP_HIGH_WATER (1u << 20)

/* Ends a streamed answer and finishes the request. */
void cmx_http_stream_end(struct cmx_http_req *req);

/* Finishes a request whose answer could not be completed (e.g. upstream failure after a
 * non-chunked head): closes the connection after what was queued. */
void cmx_http_abandon(struct cmx_http_req *req);

/* Returns a static reason phrase for status. */
const char *cmx_http_reason(int status);

#endif
