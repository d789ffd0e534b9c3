/* The OpenAI-compatible API served to clients: routing of paths to handlers, the proxy
 * for chat completions and embeddings, and OpenAI-shaped errors. This is the edge where
 * internal errors become HTTP statuses. */
#ifndef CMX_API_API_H
#define CMX_API_API_H

#include <stdint.h>

#include "http/http.h"
#include "obs/accesslog.h"

struct cmx_worker;
struct cmx_config;
struct cmx_dep_state;
struct cmx_key_set;
struct cmx_key_rec;
struct cmx_tenant_cfg;
struct cmx_admit_quota;

/* The HTTP handler of every worker (ud is the struct cmx_worker). */
void cmx_api_handle(struct cmx_http_req *req, void *ud);

/* The worker's answer to a request its HTTP server refused (cmx_http_reject_cb): the same
 * OpenAI-shaped error, with an x-request-id, an access-log line and the request metrics. */
void cmx_api_reject(struct cmx_http_req *req, int status, const char *code, const char *message,
                    void *ud);

/* Who a request runs as. */
struct cmx_api_caller {
    struct cmx_key_set *keys;            /* key snapshot used (a reference), or NULL */
    const struct cmx_key_rec *key;       /* the virtual key; NULL in open mode */
    const struct cmx_tenant_cfg *tenant; /* its tenant; NULL in open mode */
    struct cmx_admit_quota *quota;       /* limits and budget held (admit.c), or NULL */
};

/* Per-request context shared by the handlers (lives in the request arena). */
struct cmx_api_ctx {
    struct cmx_http_req *req;     /* the request */
    struct cmx_worker *w;         /* its worker */
    struct cmx_config *cfg;       /* the snapshot this request uses (one reference) */
    const char *request_id;       /* x-request-id */
    struct cmx_access_entry log;  /* filled as the request goes */
    void *proxy;                  /* the proxy state, for chat/embeddings requests */
    struct cmx_dep_state *state;  /* deployment that served (or was last tried), for metrics */
    bool unmetered;               /* /healthz, /readyz, /metrics: not counted in metrics */
    struct cmx_api_caller caller; /* who it runs as (src/api/admit.c) */
};

/* Sends {"error":{message,type,param,code}} with status; message is printf-formatted.
 * Logs the access entry. type/code/param may be NULL (null). Finishes the request. */
void cmx_api_error(struct cmx_api_ctx *ctx, int status, const char *type, const char *code,
                   const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Appends {"error":{...}} for the given fields to b (message as given, escaped). */
int cmx_api_error_json(struct cmx_buf *b, const char *message, const char *type, const char *code,
                       const char *param);

/* Answers 405 method_not_allowed with "allow: <allow>". */
void cmx_api_not_allowed(struct cmx_api_ctx *ctx, const char *allow);

/* True when the request's path (without query) is exactly p. */
bool cmx_api_path_is(const struct cmx_http_req *req, const char *p);

/* Default OpenAI error type for an HTTP status. */
const char *cmx_api_error_type(int status);

/* Writes the access-log line for the request (once). */
void cmx_api_log(struct cmx_api_ctx *ctx, int status);

/* Sends a complete JSON answer and logs it. */
void cmx_api_json(struct cmx_api_ctx *ctx, int status, const char *body, size_t len);

/* POST /v1/chat/completions and /v1/embeddings (src/api/proxy.c). */
void cmx_api_proxy(struct cmx_api_ctx *ctx, int endpoint);

#endif
