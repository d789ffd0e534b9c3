#include "api/api.h"
#include "core/log.h"
#include "router/router.h"
#include "runtime/worker.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *cmx_api_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "invalid_request_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static void put_field(struct cmx_buf *b, const char *k, const char *v, bool last)
{
    cmx_buf_printf(b, "\"%s\":", k);
    if (v == NULL) {
        cmx_buf_puts(b, "null");
    } else {
        cmx_buf_puts(b, "\"");
        cmx_buf_json_escape(b, v, strlen(v));
        cmx_buf_puts(b, "\"");
    }
    if (!last)
        cmx_buf_puts(b, ",");
}

int cmx_api_error_json(struct cmx_buf *b, const char *message, const char *type, const char *code,
                       const char *param)
{
    cmx_buf_puts(b, "{\"error\":{");
    put_field(b, "message", message, false);
    put_field(b, "type", type, false);
    put_field(b, "param", param, false);
    put_field(b, "code", code, true);
    return cmx_buf_puts(b, "}}");
}

/* cmx_api_log with the end time already read (now_ns: uv_hrtime()). */
static void log_at(struct cmx_api_ctx *ctx, int status, uint64_t now_ns)
{
    if (ctx->log.time_ms != 0)
        return; /* already logged */
    struct cmx_http_req *req = ctx->req;
    ctx->log.time_ms = cmx_time_unix_ms();
    ctx->log.request_id = ctx->request_id;
    ctx->log.method = req->method_name;
    ctx->log.path = req->path;
    ctx->log.status = status;
    ctx->log.latency_us = (now_ns - req->start_ns) / 1000;
    cmx_accesslog_write(&ctx->w->log, &ctx->log);
    atomic_fetch_sub_explicit(&ctx->w->inflight, 1, memory_order_relaxed);
    /* health checks and scrapes are not API traffic: they stay out of the metrics */
    struct cmx_dep_state *s = ctx->state ? ctx->state : cmx_router_none_state();
    if (s != NULL && !ctx->unmetered) {
        struct cmx_dep_shard *sh = &s->shards[ctx->w->id];
        cmx_counter_add(&sh->requests[cmx_metric_code_slot(status)], 1);
        cmx_hist_observe(&sh->duration, ctx->log.latency_us);
        if (ctx->log.ttfb_us >= 0)
            cmx_hist_observe(&sh->ttfb, (uint64_t)ctx->log.ttfb_us);
        if (ctx->log.prompt_tokens > 0)
            cmx_counter_add(&sh->tokens[0], (uint64_t)ctx->log.prompt_tokens);
        if (ctx->log.completion_tokens > 0)
            cmx_counter_add(&sh->tokens[1], (uint64_t)ctx->log.completion_tokens);
        if (ctx->log.cached_tokens > 0)
            cmx_counter_add(&sh->tokens[2], (uint64_t)ctx->log.cached_tokens);
    }
}

void cmx_api_log(struct cmx_api_ctx *ctx, int status)
{
    if (ctx->log.time_ms == 0)
        log_at(ctx, status, uv_hrtime());
}

void cmx_api_json(struct cmx_api_ctx *ctx, int status, const char *body, size_t len)
{
    uint64_t now = uv_hrtime(); /* the first byte and the end: the answer goes out at once */
    if (ctx->log.ttfb_us < 0)
        ctx->log.ttfb_us = (int64_t)((now - ctx->req->start_ns) / 1000);
    log_at(ctx, status, now);
    cmx_http_respond(ctx->req, status, "application/json", body, len);
}

void cmx_api_error(struct cmx_api_ctx *ctx, int status, const char *type, const char *code,
                   const char *param, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 16);
    cmx_api_error_json(&b, msg, type ? type : cmx_api_error_type(status), code, param);
    if (ctx->log.error == NULL)
        ctx->log.error = code ? cmx_arena_strndup(&ctx->req->arena, code, strlen(code))
                              : cmx_api_error_type(status);
    cmx_api_json(ctx, status, b.data, b.len);
    cmx_buf_free(&b);
}

void cmx_api_not_allowed(struct cmx_api_ctx *ctx, const char *allow)
{
    cmx_http_add_header(ctx->req, "allow", allow);
    cmx_api_error(ctx, 405, "invalid_request_error", "method_not_allowed", NULL,
                  "Method %s is not allowed for %s; use %s.", ctx->req->method_name, ctx->req->path,
                  allow);
}

bool cmx_api_path_is(const struct cmx_http_req *req, const char *p)
{
    size_t n = strlen(p);
    return req->path_len == n && memcmp(req->path, p, n) == 0;
}
