/* Admission: virtual keys and tenants at the edge (see admit.h). */
#include "api/admit.h"
#include "core/arena.h"
#include "core/clock.h"
#include "budget/budget.h"
#include "limits/limits.h"
#include "runtime/worker.h"
#include "tenants/tenants.h"
#include "keys/keystore.h"

#include <stdio.h>
#include <stdlib.h>

#include <string.h>

bool cmx_admit_required(const struct cmx_config *cfg, const struct cmx_key_set *keys)
{
    if (cfg->auth != NULL)
        return strcmp(cfg->auth, "keys") == 0;
    /* tenants of the config or of the store (admin API), or any key */
    return cfg->n_tenants > 0 || (keys != NULL && keys->n > 0) || cmx_tenants_stored() > 0;
}

static void caller_cleanup(void *arg)
{
    struct cmx_api_ctx *ctx = arg;
    cmx_key_set_unref(ctx->caller.keys);
}

bool cmx_admit_authenticate(struct cmx_api_ctx *ctx)
{
    struct cmx_api_caller *c = &ctx->caller;
    struct cmx_http_req *req = ctx->req;

    c->keys = cmx_keys_acquire();
    if (c->keys != NULL && cmx_arena_cleanup_add(&req->arena, caller_cleanup, ctx) != 0) {
        cmx_key_set_unref(c->keys);
        c->keys = NULL;
        cmx_api_error(ctx, 500, "server_error", NULL, NULL, "Out of memory.");
        return false;
    }
    if (!cmx_admit_required(ctx->cfg, c->keys))
        return true;

    const struct cmx_http_header *auth = cmx_http_find_header(req, "authorization");
    const struct cmx_http_header *api_key = cmx_http_find_header(req, "api-key");
    const char *key;
    size_t len;
    if (!cmx_key_from_headers(auth ? auth->value : NULL, auth ? auth->value_len : 0,
                              api_key ? api_key->value : NULL, api_key ? api_key->value_len : 0,
                              &key, &len)) {
        cmx_http_add_header(req, "www-authenticate", "Bearer");
        cmx_api_error(ctx, 401, "invalid_request_error", "missing_api_key", NULL,
                      "You didn't provide an API key. Send your cloudmux virtual key in an "
                      "Authorization header using Bearer auth (Authorization: Bearer cmx-...) "
                      "or in an api-key header.");
        return false;
    }
    const struct cmx_key_rec *rec = NULL;
    enum cmx_key_verdict v =
        cmx_key_set_check(c->keys, key, len, (int64_t)cmx_clock_now_ms(), &rec);
    if (v != CMX_KEY_OK) {
        cmx_http_add_header(req, "www-authenticate", "Bearer");
        cmx_api_error(ctx, 401, "invalid_request_error", "invalid_api_key", NULL, "%s",
                      v == CMX_KEY_REVOKED   ? "The API key provided has been revoked."
                      : v == CMX_KEY_EXPIRED ? "The API key provided has expired."
                                             : "Incorrect API key provided.");
        return false;
    }
    c->key = rec;
    /* tenants stored through the admin API override the config's (src/keys/keystore.h) */
    c->tenant = cmx_tenants_resolve(&req->arena, ctx->cfg, rec->tenant);
    if (c->tenant == NULL) {
        cmx_api_error(ctx, 403, "permission_error", "tenant_not_found", NULL,
                      "The key %s belongs to tenant '%s', which neither this gateway's "
                      "configuration nor the admin API defines (any more).",
                      rec->id, rec->tenant);
        return false;
    }
    ctx->log.tenant = c->tenant->name;
    ctx->log.key_id = rec->id;
    return true;
}

bool cmx_admit_model(struct cmx_api_ctx *ctx, const char *model)
{
    if (cmx_tenant_model_allowed(ctx->caller.tenant, model))
        return true;
    cmx_api_error(ctx, 404, "invalid_request_error", "model_not_found", "model",
                  "The model '%s' does not exist or you do not have access to it.", model);
    return false;
}

/* ---- rate limits and budgets --------------------------------------------------------- */

#define MINUTE_US INT64_C(60000000)
#define DAY_US    INT64_C(86400000000)
#define MAX_B     6

/* A take in flight: heap-allocated so that a callback after the client left finds it. */
struct ticket {
    struct cmx_admit_quota *q; /* NULL once abandoned */
};

struct cmx_admit_quota {
    struct cmx_api_ctx *ctx;
    void (*go)(void *ud);
    void *ud;
    struct ticket *ticket; /* take in flight */
    int64_t worst_micros;  /* charged to the budget buckets */
    int64_t tokens;        /* charged to the TPM buckets */
    struct cmx_limits_bucket b[MAX_B];
    size_t n;
    char keys[MAX_B][CMX_LIMITS_KEY_MAX];
    bool taken;   /* the buckets were charged */
    bool settled; /* cmx_admit_settle ran */
};

static void add_bucket(struct cmx_admit_quota *q, const char *who, const char *name,
                       enum cmx_limits_unit unit, int limit, int64_t cost)
{
    if (limit <= 0)
        return;
    snprintf(q->keys[q->n], sizeof(q->keys[q->n]), "%s:%s:%s", who, name,
             unit == CMX_LIMITS_REQUESTS ? "rpm" : "tpm");
    q->b[q->n] = (struct cmx_limits_bucket){
        .key = q->keys[q->n], .unit = unit, .limit = limit, .period_us = MINUTE_US, .cost = cost};
    q->n++;
}

/* A budget as a quota bucket of the current period: "bud:<who>:<name>:<period start ms>",
 * kept a day past the period's end. */
static void add_budget(struct cmx_admit_quota *q, const char *who, const char *name,
                       int64_t limit_micros, enum cmx_period period)
{
    int64_t now = (int64_t)cmx_clock_now_ms(), start, end;
    if (limit_micros < 0)
        return;
    cmx_period_bounds(period, now, &start, &end);
    snprintf(q->keys[q->n], sizeof(q->keys[q->n]), "bud:%s:%s:%lld", who, name, (long long)start);
    q->b[q->n] = (struct cmx_limits_bucket){
        .key = q->keys[q->n],
        .unit = CMX_LIMITS_QUOTA,
        .limit = limit_micros > 0 ? limit_micros : 1,
        .cost = limit_micros > 0 ? q->worst_micros : 1, /* a zero budget refuses everything */
        .init = cmx_budget_spent(who, name, start, end),
        .ttl_us = (end - now) * 1000 + DAY_US,
    };
    q->n++;
}

static void add_limit_headers(struct cmx_api_ctx *ctx, const struct cmx_limits_result *r)
{
    struct cmx_limits_headers h;
    cmx_limits_headers(r, &h);
    for (size_t i = 0; i < h.n; i++)
        cmx_http_add_header(ctx->req, h.h[i].name, h.h[i].value);
}

/* The 429 for a refusal. */
static void refuse(struct cmx_admit_quota *q, const struct cmx_limits_result *r)
{
    struct cmx_api_ctx *ctx = q->ctx;
    /* the bucket that refused names who: the key's own limit or its tenant's */
    bool key_bucket = ctx->caller.key != NULL;
    for (size_t i = 0; i < r->n && i < q->n; i++) {
        if (q->b[i].unit == CMX_LIMITS_QUOTA)
            continue;
        if (r->too_large ? q->b[i].cost > q->b[i].limit : !r->b[i].allowed) {
            key_bucket = q->keys[i][0] == 'k';
            break;
        }
    }
    char who[CMX_LIMITS_KEY_MAX + 8];
    snprintf(who, sizeof(who), "%s %s", key_bucket ? "key" : "tenant",
             key_bucket ? ctx->caller.key->id : ctx->caller.tenant->name);

    if (r->verdict == CMX_LIMITS_ERROR_DENY) {
        cmx_api_error(ctx, 429, "requests", "rate_limit_exceeded", NULL,
                      "The rate limiter is unavailable and cloudmux is configured to fail "
                      "closed (limits.on_error: fail_closed). Retry shortly.");
        return;
    }
    for (size_t i = 0; i < r->n && i < q->n; i++) {
        if (r->b[i].allowed || q->b[i].unit != CMX_LIMITS_QUOTA)
            continue;
        bool key = strncmp(q->keys[i], "bud:k:", 6) == 0;
        cmx_api_error(
            ctx, 429, "insufficient_quota", "insufficient_quota", NULL,
            "You exceeded the budget of %s %s for this period: this request could "
            "cost up to %lld.%06lld and %lld.%06lld is left.",
            key ? "key" : "tenant", key ? ctx->caller.key->id : ctx->caller.tenant->name,
            (long long)(q->worst_micros / 1000000), (long long)(q->worst_micros % 1000000),
            (long long)(r->b[i].remaining / 1000000), (long long)(r->b[i].remaining % 1000000));
        return;
    }
    if (r->too_large)
        cmx_api_error(ctx, 429, "tokens", "rate_limit_exceeded", NULL,
                      "Request too large for %s: it may use %lld tokens, more than the tokens "
                      "per minute allowed. Lower max_tokens or the prompt.",
                      who, (long long)q->tokens);
    else
        cmx_api_error(ctx, 429, "requests", "rate_limit_exceeded", NULL,
                      "Rate limit reached for %s. Please try again in %lldms.", who,
                      (long long)((r->retry_after_us + 999) / 1000));
}

static void limits_done(void *ud, const struct cmx_limits_result *r)
{
    struct ticket *tk = ud;
    struct cmx_admit_quota *q = tk->q;
    free(tk);
    if (q == NULL)
        return; /* the client left while we waited */
    q->ticket = NULL;
    add_limit_headers(q->ctx, r);
    if (!r->allowed) {
        refuse(q, r); /* finishes the request: q is gone after this */
        return;
    }
    q->taken = r->verdict == CMX_LIMITS_ALLOW;
    q->go(q->ud);
}

void cmx_admit_quota(struct cmx_api_ctx *ctx, int64_t tokens, int64_t worst_micros,
                     void (*go)(void *ud), void *ud)
{
    const struct cmx_key_rec *key = ctx->caller.key;
    const struct cmx_tenant_cfg *t = ctx->caller.tenant;
    bool budgets = (key != NULL && key->budget_micros >= 0) || (t != NULL && t->budget_micros >= 0);
    bool limits = (key != NULL && (key->rpm > 0 || key->tpm > 0)) ||
                  (t != NULL && (t->rpm > 0 || t->tpm > 0));
    struct cmx_limits_client *lc = ctx->w->limits;

    if ((!budgets && !limits) || lc == NULL) {
        go(ud);
        return;
    }
    struct cmx_admit_quota *q = cmx_arena_calloc(&ctx->req->arena, sizeof(*q));
    struct ticket *tk = malloc(sizeof(*tk));
    if (q == NULL || tk == NULL) {
        free(tk);
        cmx_api_error(ctx, 500, "server_error", NULL, NULL, "Out of memory.");
        return;
    }
    *q = (struct cmx_admit_quota){.ctx = ctx,
                                  .go = go,
                                  .ud = ud,
                                  .worst_micros = worst_micros < 0 ? 0 : worst_micros,
                                  .tokens = tokens < 0 ? 0 : tokens};
    ctx->caller.quota = q;
    int period = t != NULL ? cmx_period_parse(t->budget_period) : -1;
    if (period < 0)
        period = CMX_PERIOD_MONTH;
    if (key != NULL) {
        add_bucket(q, "k", key->id, CMX_LIMITS_REQUESTS, key->rpm, 1);
        add_bucket(q, "k", key->id, CMX_LIMITS_TOKENS, key->tpm, q->tokens);
        add_budget(q, "k", key->id, key->budget_micros, (enum cmx_period)period);
    }
    if (t != NULL) {
        add_bucket(q, "t", t->name, CMX_LIMITS_REQUESTS, t->rpm, 1);
        add_bucket(q, "t", t->name, CMX_LIMITS_TOKENS, t->tpm, q->tokens);
        add_budget(q, "t", t->name, t->budget_micros, (enum cmx_period)period);
    }
    tk->q = q;
    q->ticket = tk;
    if (cmx_limits_take(lc, q->b, q->n, limits_done, tk) != 0) {
        q->ticket = NULL;
        free(tk);
        cmx_api_error(ctx, 500, "server_error", NULL, NULL,
                      "The rate limiter refused the request.");
    }
}

/* Settlements of this worker thread not sent yet: the same bucket's corrections are summed,
 * and all of them go out in one limiter call per loop iteration (cmx_admit_flush from the
 * worker's prepare handle), so that with Redis a busy worker makes one settle call per
 * iteration instead of one per request. */
static _Thread_local struct {
    size_t n;
    struct cmx_limits_bucket b[CMX_LIMITS_MAX_BUCKETS];
    char keys[CMX_LIMITS_MAX_BUCKETS][CMX_LIMITS_KEY_MAX];
} pending;

static void queue_settle(struct cmx_limits_client *c, const struct cmx_limits_bucket *b)
{
    for (size_t i = 0; i < pending.n; i++) {
        struct cmx_limits_bucket *p = &pending.b[i];
        if (p->unit == b->unit && p->limit == b->limit && p->period_us == b->period_us &&
            strcmp(p->key, b->key) == 0) {
            p->cost += b->cost;
            if (b->unit == CMX_LIMITS_QUOTA)
                p->ttl_us = b->ttl_us > p->ttl_us ? b->ttl_us : p->ttl_us;
            return;
        }
    }
    if (pending.n == CMX_LIMITS_MAX_BUCKETS)
        cmx_admit_flush(c);
    size_t k = pending.n++;
    pending.b[k] = *b;
    snprintf(pending.keys[k], sizeof(pending.keys[k]), "%s", b->key);
    pending.b[k].key = pending.keys[k];
}

void cmx_admit_settle(struct cmx_api_ctx *ctx, int64_t tokens, int64_t cost_micros)
{
    struct cmx_admit_quota *q = ctx->caller.quota;
    if (q == NULL || q->settled)
        return;
    q->settled = true;
    if (q->ticket != NULL) {
        q->ticket->q = NULL; /* limits_done frees it */
        q->ticket = NULL;
    }
    if (!q->taken || ctx->w->limits == NULL)
        return;
    struct cmx_limits_bucket fix[MAX_B];
    size_t n = 0;
    for (size_t i = 0; i < q->n; i++) {
        if (q->b[i].unit == CMX_LIMITS_TOKENS && tokens >= 0 && tokens != q->tokens) {
            fix[n] = q->b[i];
            fix[n++].cost = tokens - q->tokens;
        } else if (q->b[i].unit == CMX_LIMITS_QUOTA && cost_micros != q->b[i].cost) {
            fix[n] = q->b[i];
            fix[n++].cost = (cost_micros < 0 ? 0 : cost_micros) - q->b[i].cost;
        }
    }
    for (size_t i = 0; i < n; i++)
        queue_settle(ctx->w->limits, &fix[i]);
}

void cmx_admit_flush(struct cmx_limits_client *c)
{
    if (pending.n > 0 && c != NULL)
        cmx_limits_settle(c, pending.b, pending.n);
    pending.n = 0;
}
