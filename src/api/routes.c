/* Path routing and the small local endpoints: models, health, readiness. */
#include "api/api.h"
#include "config/config.h"
#include "core/err.h"
#include "providers/provider.h"
#include "runtime/worker.h"

#include <stdio.h>
#include <string.h>

static void ctx_cleanup(void *p)
{
    struct cmx_api_ctx *ctx = p;
    cmx_config_unref(ctx->cfg);
}

/* Accepts a client's x-request-id when it is short and printable; else makes one. */
static const char *request_id(struct cmx_http_req *req, struct cmx_worker *w)
{
    const struct cmx_http_header *h = cmx_http_find_header(req, "x-request-id");
    if (h != NULL && h->value_len > 0 && h->value_len <= 128) {
        bool ok = true;
        for (size_t i = 0; i < h->value_len && ok; i++)
            ok = h->value[i] > 0x20 && h->value[i] < 0x7f && h->value[i] != '"' &&
                 h->value[i] != '\\';
        if (ok)
            return h->value;
    }
    uint64_t a = cmx_worker_rand(w), b = cmx_worker_rand(w);
    return cmx_arena_printf(&req->arena, "req_%016llx%08llx", (unsigned long long)a,
                            (unsigned long long)(b & 0xffffffffu));
}

static void models_list(struct cmx_api_ctx *ctx)
{
    struct cmx_buf b;
    cmx_buf_init(&b, 64u << 20);
    cmx_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < ctx->cfg->n_models; i++) {
        const struct cmx_model_cfg *m = &ctx->cfg->models[i];
        cmx_buf_puts(&b, i ? ",{\"id\":\"" : "{\"id\":\"");
        cmx_buf_json_escape(&b, m->name, strlen(m->name));
        cmx_buf_printf(&b, "\",\"object\":\"model\",\"created\":%llu,\"owned_by\":\"cloudmux\"}",
                       (unsigned long long)ctx->w->rt->started_unix);
    }
    cmx_buf_puts(&b, "]}");
    cmx_api_json(ctx, 200, b.data, b.len);
    cmx_buf_free(&b);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes a path segment in place. */
static size_t url_decode(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        int h, l;
        if (*r == '%' && (h = hexval(r[1])) >= 0 && (l = hexval(r[2])) >= 0) {
            *w++ = (char)(h * 16 + l);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static void model_get(struct cmx_api_ctx *ctx, const char *id_raw)
{
    char *id = cmx_arena_strndup(&ctx->req->arena, id_raw, strlen(id_raw));
    size_t len = id ? url_decode(id) : 0;
    const struct cmx_model_cfg *m = id ? cmx_config_find_model(ctx->cfg, id, len) : NULL;
    if (m == NULL) {
        cmx_api_error(ctx, 404, "invalid_request_error", "model_not_found", "model",
                      "The model '%s' does not exist or you do not have access to it.",
                      id ? id : "");
        return;
    }
    ctx->log.model = m->name;
    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 20);
    cmx_buf_puts(&b, "{\"id\":\"");
    cmx_buf_json_escape(&b, m->name, strlen(m->name));
    cmx_buf_printf(&b, "\",\"object\":\"model\",\"created\":%llu,\"owned_by\":\"cloudmux\"}",
                   (unsigned long long)ctx->w->rt->started_unix);
    cmx_api_json(ctx, 200, b.data, b.len);
    cmx_buf_free(&b);
}

static bool path_is(const struct cmx_http_req *req, const char *p)
{
    size_t n = strlen(p);
    return req->path_len == n && memcmp(req->path, p, n) == 0;
}

static void not_allowed(struct cmx_api_ctx *ctx, const char *allow)
{
    cmx_http_add_header(ctx->req, "allow", allow);
    cmx_api_error(ctx, 405, "invalid_request_error", "method_not_allowed", NULL,
                  "Method %s is not allowed for %s; use %s.", ctx->req->method_name, ctx->req->path,
                  allow);
}

void cmx_api_handle(struct cmx_http_req *req, void *ud)
{
    struct cmx_worker *w = ud;
    struct cmx_api_ctx *ctx = cmx_arena_calloc(&req->arena, sizeof(*ctx));
    if (ctx == NULL) {
        cmx_http_respond(req, 500, NULL, NULL, 0);
        return;
    }
    ctx->req = req;
    ctx->w = w;
    ctx->cfg = cmx_config_ref(w->cfg);
    cmx_arena_cleanup_add(&req->arena, ctx_cleanup, ctx);
    ctx->log.upstream_latency_us = -1;
    ctx->log.ttfb_us = -1;
    ctx->log.prompt_tokens = ctx->log.completion_tokens = ctx->log.cached_tokens = -1;
    ctx->request_id = request_id(req, w);
    cmx_http_add_header(req, "x-request-id", ctx->request_id);
    req->data = ctx;

    enum cmx_http_method m = req->method;
    bool get = m == CMX_HTTP_GET || m == CMX_HTTP_HEAD;
    if (path_is(req, "/v1/chat/completions") || path_is(req, "/chat/completions")) {
        if (m != CMX_HTTP_POST)
            return not_allowed(ctx, "POST");
        return cmx_api_proxy(ctx, CMX_EP_CHAT);
    }
    if (path_is(req, "/v1/embeddings") || path_is(req, "/embeddings")) {
        if (m != CMX_HTTP_POST)
            return not_allowed(ctx, "POST");
        return cmx_api_proxy(ctx, CMX_EP_EMBEDDINGS);
    }
    if (path_is(req, "/v1/models") || path_is(req, "/models")) {
        if (!get)
            return not_allowed(ctx, "GET");
        return models_list(ctx);
    }
    if (strncmp(req->path, "/v1/models/", 11) == 0 && req->path_len > 11) {
        if (!get)
            return not_allowed(ctx, "GET");
        return model_get(ctx, req->path + 11);
    }
    if (path_is(req, "/healthz")) {
        if (!get)
            return not_allowed(ctx, "GET");
        static const char ok[] = "{\"status\":\"ok\"}";
        return cmx_api_json(ctx, 200, ok, sizeof(ok) - 1);
    }
    if (path_is(req, "/readyz")) {
        if (!get)
            return not_allowed(ctx, "GET");
        if (atomic_load(&w->rt->ready) && !atomic_load(&w->rt->draining)) {
            static const char ok[] = "{\"status\":\"ready\"}";
            return cmx_api_json(ctx, 200, ok, sizeof(ok) - 1);
        }
        static const char no[] = "{\"status\":\"not ready\"}";
        return cmx_api_json(ctx, 503, no, sizeof(no) - 1);
    }
    cmx_api_error(ctx, 404, "invalid_request_error", "unknown_url", NULL, "Invalid URL (%s %s).",
                  req->method_name, req->path);
}
