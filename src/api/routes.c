/* Path routing and the small local endpoints: models, health, readiness. */
#include "api/api.h"
#include "core/fmt.h"
#include "api/admit.h"
#include "tenants/tenants.h"
#include "agreements/agreements.h"
#include "core/clock.h"
#include "http/query.h"
#include "config/config.h"
#include "core/err.h"
#include "providers/provider.h"
#include "obs/metrics.h"
#include "router/router.h"
#include "runtime/worker.h"
#include "ledger/ledger.h"
#include "api/admin_keys.h"

#include <signal.h>
#include <strings.h>
#include <unistd.h>

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
    /* "req_" + 24 hex digits of randomness */
    uint64_t a = cmx_worker_rand(w), b = cmx_worker_rand(w);
    char *id = cmx_arena_alloc(&req->arena, 4 + 24 + 1);
    if (id == NULL)
        return NULL;
    memcpy(id, "req_", 4);
    *cmx_fmt_hex(cmx_fmt_hex(id + 4, a, 16), b, 8) = '\0';
    return id;
}

static void models_list(struct cmx_api_ctx *ctx)
{
    struct cmx_buf b;
    cmx_buf_init(&b, 64u << 20);
    cmx_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    for (size_t i = 0; i < ctx->cfg->n_models; i++) {
        const struct cmx_model_cfg *m = &ctx->cfg->models[i];
        if (!cmx_tenant_model_allowed(ctx->caller.tenant, m->name))
            continue; /* a tenant sees only its models */
        cmx_buf_puts(&b, first ? "{\"id\":\"" : ",{\"id\":\"");
        first = false;
        cmx_buf_json_escape(&b, m->name, strlen(m->name));
        cmx_buf_printf(&b, "\",\"object\":\"model\",\"created\":%llu,\"owned_by\":\"cloudmux\"}",
                       (unsigned long long)ctx->w->rt->started_unix);
    }
    cmx_buf_puts(&b, "]}");
    cmx_api_json(ctx, 200, b.data, b.len);
    cmx_buf_free(&b);
}

static void model_get(struct cmx_api_ctx *ctx, const char *id_raw)
{
    char *id = cmx_arena_strndup(&ctx->req->arena, id_raw, strlen(id_raw));
    size_t len = id ? cmx_percent_decode(id) : 0;
    const struct cmx_model_cfg *m = id ? cmx_config_find_model(ctx->cfg, id, len) : NULL;
    if (m == NULL) {
        cmx_api_error(ctx, 404, "invalid_request_error", "model_not_found", "model",
                      "The model '%s' does not exist or you do not have access to it.",
                      id ? id : "");
        return;
    }
    if (!cmx_admit_model(ctx, m->name))
        return;
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

static void metrics(struct cmx_api_ctx *ctx)
{
    int64_t inflight = -1; /* this scrape is not a request in flight */
    for (int i = 0; i < ctx->w->rt->n_workers; i++)
        inflight += atomic_load_explicit(&ctx->w->rt->workers[i].inflight, memory_order_relaxed);
    struct cmx_buf b;
    cmx_buf_init(&b, 256u << 20);
    if (cmx_metrics_render(&b, inflight) != 0 ||
        (ctx->w->rt->limits != NULL && cmx_limits_render_metrics(ctx->w->rt->limits, &b) != 0)) {
        cmx_buf_free(&b);
        cmx_api_error(ctx, 500, "server_error", "internal_error", NULL, "Metrics too large.");
        return;
    }
    cmx_api_log(ctx, 200);
    cmx_http_respond(ctx->req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    cmx_buf_free(&b);
}

static const char *circuit_name(int c)
{
    return c == CMX_CIRCUIT_OPEN ? "open" : c == CMX_CIRCUIT_HALF_OPEN ? "half_open" : "closed";
}

static void json_str(struct cmx_buf *b, const char *k, const char *v, bool comma)
{
    cmx_buf_printf(b, "%s\"%s\":", comma ? "," : "", k);
    if (v == NULL) {
        cmx_buf_puts(b, "null");
        return;
    }
    cmx_buf_puts(b, "\"");
    cmx_buf_json_escape(b, v, strlen(v));
    cmx_buf_puts(b, "\"");
}

/* GET /admin/v1/deployments: every deployment of the running config with its health. */
static void admin_deployments(struct cmx_api_ctx *ctx)
{
    struct cmx_buf b;
    cmx_buf_init(&b, 64u << 20);
    uint64_t now = cmx_mono_ms();
    cmx_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    for (size_t i = 0; i < ctx->cfg->n_models; i++) {
        const struct cmx_model_cfg *m = &ctx->cfg->models[i];
        const char *strategy = m->strategy ? m->strategy : ctx->cfg->routing.strategy;
        for (size_t j = 0; j < m->n_deployments; j++) {
            const struct cmx_deployment_cfg *d = &m->deployments[j];
            const struct cmx_dep_state *s = d->state;
            cmx_buf_puts(&b, first ? "{" : ",{");
            first = false;
            json_str(&b, "model", m->name, false);
            json_str(&b, "provider", d->provider->name, true);
            json_str(&b, "type", cmx_provider_type_name(d->provider->type), true);
            json_str(&b, "cloud", d->provider->cloud, true);
            json_str(&b, "region", d->provider->region, true);
            json_str(&b, "upstream_model", d->model, true);
            json_str(&b, "strategy", strategy, true);
            cmx_buf_printf(&b, ",\"priority\":%d,\"weight\":%d", d->priority, d->weight);
            if (s == NULL) {
                cmx_buf_puts(&b, "}");
                continue;
            }
            int c = atomic_load(&s->circuit);
            uint64_t until = atomic_load(&s->open_until_ms);
            int64_t ewma = atomic_load(&s->ewma_ttfb_us);
            json_str(&b, "state", circuit_name(c), true);
            cmx_buf_printf(&b, ",\"consecutive_failures\":%d",
                           atomic_load(&s->consecutive_failures));
            if (c != CMX_CIRCUIT_CLOSED && until > now)
                cmx_buf_printf(&b, ",\"open_for_ms\":%llu", (unsigned long long)(until - now));
            else
                cmx_buf_puts(&b, ",\"open_for_ms\":0");
            if (ewma >= 0)
                cmx_buf_printf(&b, ",\"ewma_ttfb_ms\":%lld.%03lld", (long long)(ewma / 1000),
                               (long long)(ewma % 1000));
            else
                cmx_buf_puts(&b, ",\"ewma_ttfb_ms\":null");
            int64_t ppm = atomic_load(&s->error_rate_ppm);
            cmx_buf_printf(&b, ",\"inflight\":%lld,\"error_rate\":%lld.%06lld}",
                           (long long)atomic_load(&s->inflight), (long long)(ppm / 1000000),
                           (long long)(ppm % 1000000));
        }
    }
    cmx_buf_puts(&b, "]}");
    cmx_api_json(ctx, 200, b.data, b.len);
    cmx_buf_free(&b);
}

/* The "at" query parameter (ISO 8601 date or time, UTC) or the gateway's clock (which
 * `serve --now` freezes). False after answering 400. */
static bool query_at(struct cmx_api_ctx *ctx, uint64_t *at_ms)
{
    const char *at;
    int64_t ms;
    bool is_date;

    int rc = cmx_query_get(ctx->req->query, "at", &ctx->req->arena, &at);
    if (rc == CMX_ENOTFOUND) {
        *at_ms = cmx_clock_now_ms();
        return true;
    }
    if (rc != 0 || cmx_clock_parse_iso(at, strlen(at), &ms, &is_date) != 0 || ms < 0) {
        cmx_api_error(ctx, 400, "invalid_request_error", "invalid_value", "at",
                      "Query parameter at must be an ISO 8601 date or time in UTC "
                      "(e.g. 2026-12-15 or 2026-12-15T09:30:00Z).");
        return false;
    }
    *at_ms = (uint64_t)ms;
    return true;
}

/* An optional query parameter: NULL when absent. False after answering 400. */
static bool query_opt(struct cmx_api_ctx *ctx, const char *name, const char **value)
{
    int rc = cmx_query_get(ctx->req->query, name, &ctx->req->arena, value);
    if (rc == CMX_ENOTFOUND) {
        *value = NULL;
        return true;
    }
    if (rc == 0)
        return true;
    cmx_api_error(ctx, 400, "invalid_request_error", "invalid_value", name,
                  "Query parameter %s is not validly percent-encoded.", name);
    return false;
}

/* GET /admin/v1/agreements/matrix?at=: products x clouds, as `agreements matrix --format json`. */
static void admin_agreements_matrix(struct cmx_api_ctx *ctx)
{
    uint64_t at;
    struct cmx_buf b;

    if (!query_at(ctx, &at))
        return;
    cmx_buf_init(&b, 64u << 20);
    if (cmx_agreements_matrix_json(ctx->cfg, at, &b) != 0) {
        cmx_buf_free(&b);
        cmx_api_error(ctx, 500, "server_error", NULL, NULL, "Out of memory building the matrix.");
        return;
    }
    cmx_api_json(ctx, 200, b.data, b.len);
    cmx_buf_free(&b);
}

/* GET /admin/v1/agreements/check?(product=|model=)&cloud=&capability=&at=: one decision, as
 * `agreements check` but JSON. */
static void admin_agreements_check(struct cmx_api_ctx *ctx)
{
    const char *product, *model, *cloud, *cap;
    uint64_t at;
    char err[256];
    struct cmx_buf b;

    if (!query_opt(ctx, "product", &product) || !query_opt(ctx, "model", &model) ||
        !query_opt(ctx, "cloud", &cloud) || !query_opt(ctx, "capability", &cap) ||
        !query_at(ctx, &at))
        return;
    if ((product == NULL) == (model == NULL) || cloud == NULL) {
        cmx_api_error(ctx, 400, "invalid_request_error", "missing_required_parameter",
                      cloud == NULL ? "cloud" : "product",
                      "Give cloud and exactly one of product or model, e.g. "
                      "/admin/v1/agreements/check?model=gpt-5&cloud=aws&at=2026-12-01.");
        return;
    }
    cmx_buf_init(&b, 1u << 20);
    err[0] = '\0';
    int rc =
        cmx_agreements_check_json(ctx->cfg, product, model, cloud, cap, at, &b, err, sizeof(err));
    if (rc == CMX_EINVAL || rc == CMX_ENOTFOUND) {
        cmx_buf_free(&b);
        cmx_api_error(ctx, rc == CMX_ENOTFOUND ? 404 : 400, "invalid_request_error",
                      rc == CMX_ENOTFOUND ? "not_found" : "invalid_value", NULL, "%s", err);
        return;
    }
    if (rc != 0) {
        cmx_buf_free(&b);
        cmx_api_error(ctx, 500, "server_error", NULL, NULL, "Out of memory building the answer.");
        return;
    }
    cmx_api_json(ctx, 200, b.data, b.len);
    cmx_buf_free(&b);
}

/* POST /admin/v1/reload: the same as SIGHUP (the main thread does the work). */
static void admin_reload(struct cmx_api_ctx *ctx)
{
    kill(getpid(), SIGHUP);
    static const char ok[] = "{\"status\":\"reload requested\"}";
    cmx_api_json(ctx, 202, ok, sizeof(ok) - 1);
}

/* Constant-time comparison of a presented token with the expected one. */
static bool token_equal(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    unsigned char diff = (unsigned char)(alen != blen);
    for (size_t i = 0; i < blen; i++)
        diff |= (unsigned char)((i < alen ? a[i] : 0) ^ b[i]);
    return diff == 0;
}

/* ---- ledger reports (src/ledger/) ---- */

/* GET /admin/v1/statements?payee=&period= and GET /admin/v1/usage?period=&by=: JSON. */
static void admin_ledger(struct cmx_api_ctx *ctx, bool statement)
{
    char url[4096], err[512] = "";
    if (cmx_ledger_url(ctx->cfg, url, sizeof(url)) == NULL) {
        cmx_api_error(ctx, 404, "invalid_request_error", "ledger_off", NULL,
                      "The ledger is off in this configuration.");
        return;
    }
    const char *period, *payee, *by;
    if (!query_opt(ctx, "period", &period) || !query_opt(ctx, "payee", &payee) ||
        !query_opt(ctx, "by", &by))
        return;
    if (period != NULL && *period == '\0')
        period = NULL;
    cmx_ledger_flush_global();
    struct cmx_buf b;
    cmx_buf_init(&b, 256u << 20);
    int r =
        statement
            ? cmx_ledger_statement(url, payee, period, CMX_LEDGER_FORMAT_JSON, &b, err, sizeof(err))
            : cmx_ledger_usage(url, period, by, CMX_LEDGER_FORMAT_JSON, &b, err, sizeof(err));
    if (r == CMX_EINVAL) {
        /* the one parameter at fault: payee and period are checked first, by last */
        const char *param = statement && (payee == NULL || *payee == '\0')    ? "payee"
                            : period != NULL && !cmx_ledger_period_ok(period) ? "period"
                            : statement                                       ? NULL
                                                                              : "by";
        cmx_api_error(ctx, 400, "invalid_request_error", "invalid_query", param, "%s", err);
    } else if (r != 0)
        cmx_api_error(ctx, 503, "server_error", "ledger_unavailable", NULL,
                      "The ledger cannot be read right now.");
    else
        cmx_api_json(ctx, 200, b.data, b.len);
    cmx_buf_free(&b);
}

/* The admin API: with admin_key set, "Authorization: Bearer <admin_key>" is required; without it,
 * only clients on the loopback interface are served. */
static bool admin_allowed(struct cmx_api_ctx *ctx)
{
    struct cmx_http_req *req = ctx->req;
    const char *key = ctx->cfg->admin_key;
    if (key == NULL || key[0] == '\0') {
        if (cmx_http_peer_is_loopback(req))
            return true;
        cmx_api_error(ctx, 403, "permission_error", "admin_disabled", NULL,
                      "The admin API is only served on loopback unless admin_key is set.");
        return false;
    }
    const struct cmx_http_header *h = cmx_http_find_header(req, "authorization");
    if (h != NULL && h->value_len > 7 && strncasecmp(h->value, "Bearer ", 7) == 0 &&
        token_equal(h->value + 7, h->value_len - 7, key))
        return true;
    cmx_http_add_header(req, "www-authenticate", "Bearer");
    cmx_api_error(ctx, 401, "authentication_error", "invalid_admin_key", NULL,
                  "The admin API needs Authorization: Bearer <admin_key>.");
    return false;
}

/* The request's context in its arena: config snapshot, request id (and its header), log
 * defaults; counted in flight until it is logged. NULL when out of memory. */
static struct cmx_api_ctx *ctx_new(struct cmx_http_req *req, struct cmx_worker *w)
{
    struct cmx_api_ctx *ctx = cmx_arena_calloc(&req->arena, sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
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
    atomic_fetch_add_explicit(&w->inflight, 1, memory_order_relaxed);
    return ctx;
}

void cmx_api_reject(struct cmx_http_req *req, int status, const char *code, const char *message,
                    void *ud)
{
    struct cmx_api_ctx *ctx = ctx_new(req, ud);
    if (ctx == NULL) {
        cmx_http_respond(req, status, NULL, NULL, 0);
        return;
    }
    cmx_api_error(ctx, status, "invalid_request_error", code, NULL, "%s", message);
}

void cmx_api_handle(struct cmx_http_req *req, void *ud)
{
    struct cmx_worker *w = ud;
    struct cmx_api_ctx *ctx = ctx_new(req, w);
    if (ctx == NULL) {
        cmx_http_respond(req, 500, NULL, NULL, 0);
        return;
    }

    enum cmx_http_method m = req->method;
    bool get = m == CMX_HTTP_GET || m == CMX_HTTP_HEAD;
    bool chat =
        cmx_api_path_is(req, "/v1/chat/completions") || cmx_api_path_is(req, "/chat/completions");
    bool emb = cmx_api_path_is(req, "/v1/embeddings") || cmx_api_path_is(req, "/embeddings");
    bool models = cmx_api_path_is(req, "/v1/models") || cmx_api_path_is(req, "/models");
    bool model = strncmp(req->path, "/v1/models/", 11) == 0 && req->path_len > 11;
    /* the API proper needs a virtual key once keys or tenants exist */
    if ((chat || emb || models || model) && !cmx_admit_authenticate(ctx))
        return;
    if (chat) {
        if (m != CMX_HTTP_POST)
            return cmx_api_not_allowed(ctx, "POST");
        return cmx_api_proxy(ctx, CMX_EP_CHAT);
    }
    if (emb) {
        if (m != CMX_HTTP_POST)
            return cmx_api_not_allowed(ctx, "POST");
        return cmx_api_proxy(ctx, CMX_EP_EMBEDDINGS);
    }
    if (models) {
        if (!get)
            return cmx_api_not_allowed(ctx, "GET");
        return models_list(ctx);
    }
    if (model) {
        if (!get)
            return cmx_api_not_allowed(ctx, "GET");
        return model_get(ctx, req->path + 11);
    }
    ctx->unmetered = cmx_api_path_is(req, "/healthz") || cmx_api_path_is(req, "/readyz") ||
                     cmx_api_path_is(req, "/metrics");
    /* server.protect_probes puts the probes behind the admin key (when one is set) */
    if (ctx->unmetered && ctx->cfg->server.protect_probes && ctx->cfg->admin_key != NULL &&
        !admin_allowed(ctx))
        return;
    if (cmx_api_path_is(req, "/healthz")) {
        if (!get)
            return cmx_api_not_allowed(ctx, "GET");
        static const char ok[] = "{\"status\":\"ok\"}";
        return cmx_api_json(ctx, 200, ok, sizeof(ok) - 1);
    }
    if (cmx_api_path_is(req, "/readyz")) {
        if (!get)
            return cmx_api_not_allowed(ctx, "GET");
        if (atomic_load(&w->rt->ready) && !atomic_load(&w->rt->draining)) {
            static const char ok[] = "{\"status\":\"ready\"}";
            return cmx_api_json(ctx, 200, ok, sizeof(ok) - 1);
        }
        static const char no[] = "{\"status\":\"not ready\"}";
        return cmx_api_json(ctx, 503, no, sizeof(no) - 1);
    }
    if (cmx_api_path_is(req, "/metrics")) {
        if (!get)
            return cmx_api_not_allowed(ctx, "GET");
        return metrics(ctx);
    }
    if (strncmp(req->path, "/admin/", 7) == 0 && !admin_allowed(ctx))
        return;
    if (cmx_api_path_is(req, "/admin/v1/deployments")) {
        if (!get)
            return cmx_api_not_allowed(ctx, "GET");
        return admin_deployments(ctx);
    }
    if (cmx_api_path_is(req, "/admin/v1/agreements/matrix")) {
        if (!get)
            return cmx_api_not_allowed(ctx, "GET");
        return admin_agreements_matrix(ctx);
    }
    if (cmx_api_path_is(req, "/admin/v1/agreements/check")) {
        if (!get)
            return cmx_api_not_allowed(ctx, "GET");
        return admin_agreements_check(ctx);
    }
    if (cmx_api_path_is(req, "/admin/v1/statements") || cmx_api_path_is(req, "/admin/v1/usage")) {
        if (!get)
            return cmx_api_not_allowed(ctx, "GET");
        return admin_ledger(ctx, cmx_api_path_is(req, "/admin/v1/statements"));
    }
    if (cmx_api_path_is(req, "/admin/v1/reload")) {
        if (m != CMX_HTTP_POST)
            return cmx_api_not_allowed(ctx, "POST");
        return admin_reload(ctx);
    }
    /* virtual keys and stored tenants (src/api/admin_keys.c) */
    if (cmx_admin_keys_route(ctx))
        return;
    cmx_api_error(ctx, 404, "invalid_request_error", "unknown_url", NULL, "Invalid URL (%s %s).",
                  req->method_name, req->path);
}
