/* The admin API of virtual keys and stored tenants (src/keys/keystore.h):
 *   POST /admin/v1/keys           {tenant, name?, expires?, rpm?, tpm?, budget?} -> 201, key once
 *   GET /admin/v1/keys            entries, never a key or its hash
 *   DELETE /admin/v1/keys/{id}    revoke (idempotent); 404 unknown
 *   POST /admin/v1/tenants        a tenant definition (the config's shape and rules)
 *   GET /admin/v1/tenants         config + stored, stored overriding
 *   DELETE /admin/v1/tenants/{name}
 * Each call opens the ledger database, like the ledger reports: admin calls are rare. The
 * running gateways (this one included) pick the change up through their refreshers. */
#include "api/admin_keys.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/err.h"
#include "http/query.h"
#include "keys/keystore.h"
#include "keys/refresher.h"
#include "ledger/ledger.h"
#include "ledger/store.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Opens the store of ctx's config, or answers and returns NULL. */
static struct cmx_ledger_store *open_store(struct cmx_api_ctx *ctx)
{
    char url[4096], err[512];
    struct cmx_ledger_store *s = NULL;
    if (cmx_ledger_url(ctx->cfg, url, sizeof(url)) == NULL) {
        cmx_api_error(ctx, 404, "invalid_request_error", "ledger_off", NULL,
                      "Keys and stored tenants live in the ledger database, which is off in "
                      "this configuration.");
        return NULL;
    }
    if (cmx_ledger_store_open(url, &s, err, sizeof(err)) != 0) {
        cmx_api_error(ctx, 503, "server_error", "ledger_unavailable", NULL,
                      "The ledger database cannot be reached right now.");
        return NULL;
    }
    return s;
}

static void store_failed(struct cmx_api_ctx *ctx)
{
    cmx_api_error(ctx, 503, "server_error", "ledger_unavailable", NULL,
                  "The ledger database failed; nothing was changed.");
}

static void reply(struct cmx_api_ctx *ctx, int status, struct cmx_buf *b)
{
    if (b->data == NULL)
        cmx_api_error(ctx, 500, "server_error", NULL, NULL, "Out of memory.");
    else
        cmx_api_json(ctx, status, b->data, b->len);
    cmx_buf_free(b);
}

/* A string member (NULL when absent); false after answering 400 for another type. */
static bool member_str(struct cmx_api_ctx *ctx, struct json_object *o, const char *k,
                       bool number_ok, const char **out)
{
    struct json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(o, k, &v) || json_object_is_type(v, json_type_null))
        return true;
    if (json_object_is_type(v, json_type_string) ||
        (number_ok &&
         (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))) {
        *out = json_object_get_string(v);
        return true;
    }
    cmx_api_error(ctx, 400, "invalid_request_error", "invalid_type", k, "%s must be a %s.", k,
                  number_ok ? "number or a decimal string" : "string");
    return false;
}

static void keys_create(struct cmx_api_ctx *ctx)
{
    struct cmx_http_req *req = ctx->req;
    struct json_tokener *tok = json_tokener_new();
    struct json_object *o =
        tok ? json_tokener_parse_ex(tok, req->body.data ? req->body.data : "", (int)req->body.len)
            : NULL;
    bool whole = tok != NULL && json_tokener_get_error(tok) == json_tokener_success;
    for (size_t i = whole ? json_tokener_get_parse_end(tok) : 0; whole && i < req->body.len; i++) {
        char ch = req->body.data[i]; /* trailing white space only */
        whole = ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
    }
    json_tokener_free(tok);
    if (o == NULL || !whole || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        cmx_api_error(
            ctx, 400, "invalid_request_error", "invalid_json", NULL,
            "The body must be a JSON object such as {\"tenant\":\"acme\",\"name\":\"ci\"}.");
        return;
    }
    static const char *const allowed[] = {"tenant", "name", "expires", "rpm", "tpm", "budget"};
    json_object_object_foreach(o, k, val)
    {
        (void)val;
        bool ok = false;
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]) && !ok; i++)
            ok = strcmp(k, allowed[i]) == 0;
        if (!ok) {
            cmx_api_error(ctx, 400, "invalid_request_error", "unknown_parameter", k,
                          "Unknown parameter: '%s'. Use tenant, name, expires, rpm, tpm, budget.",
                          k);
            json_object_put(o);
            return;
        }
    }
    const char *tenant, *name, *expires, *rpm, *tpm, *budget;
    if (!member_str(ctx, o, "tenant", false, &tenant) ||
        !member_str(ctx, o, "name", false, &name) ||
        !member_str(ctx, o, "expires", false, &expires) || !member_str(ctx, o, "rpm", true, &rpm) ||
        !member_str(ctx, o, "tpm", true, &tpm) || !member_str(ctx, o, "budget", true, &budget)) {
        json_object_put(o);
        return;
    }
    if (tenant == NULL) {
        json_object_put(o);
        cmx_api_error(ctx, 400, "invalid_request_error", "missing_required_parameter", "tenant",
                      "tenant is required.");
        return;
    }
    char err[512] = "";
    int64_t now = (int64_t)cmx_clock_now_ms();
    struct cmx_key_params p = {.tenant = tenant, .name = name};
    if (cmx_keystore_parse_params(expires, rpm, tpm, budget, now, &p, err, sizeof(err)) != 0) {
        json_object_put(o);
        cmx_api_error(ctx, 400, "invalid_request_error", "invalid_value", NULL, "%s.", err);
        return;
    }
    struct cmx_ledger_store *s = open_store(ctx);
    if (s == NULL) {
        json_object_put(o);
        return;
    }
    char key[CMX_KEY_TEXT_MAX + 1];
    struct cmx_key_rec rec;
    int rc = cmx_keystore_create(s, ctx->cfg, &p, now, key, &rec, err, sizeof(err));
    s->ops->close(s);
    json_object_put(o);
    if (rc == CMX_EINVAL) {
        cmx_api_error(ctx, 400, "invalid_request_error", "invalid_value", NULL, "%s.", err);
        return;
    }
    if (rc != 0)
        return store_failed(ctx);
    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 20);
    cmx_keystore_key_json(&b, &rec, now);
    if (b.len > 0)
        b.len--; /* reopen the object: the key, shown this once */
    cmx_keys_refresher_kick();
    cmx_buf_printf(&b, ",\"key\":\"%s\"}", key);
    memset(key, 0, sizeof(key));
    reply(ctx, 201, &b);
}

static void keys_list(struct cmx_api_ctx *ctx)
{
    struct cmx_ledger_store *s = open_store(ctx);
    if (s == NULL)
        return;
    struct cmx_buf b;
    cmx_buf_init(&b, 256u << 20);
    int rc = cmx_keystore_list(s, true, (int64_t)cmx_clock_now_ms(), &b);
    s->ops->close(s);
    if (rc != 0) {
        cmx_buf_free(&b);
        return store_failed(ctx);
    }
    if (b.len > 0 && b.data[b.len - 1] == '\n')
        b.len--;
    reply(ctx, 200, &b);
}

static void keys_revoke(struct cmx_api_ctx *ctx, const char *id)
{
    if (strlen(id) > CMX_KEY_ID_LEN) {
        cmx_api_error(ctx, 404, "invalid_request_error", "key_not_found", NULL,
                      "No virtual key has that id.");
        return;
    }
    struct cmx_ledger_store *s = open_store(ctx);
    if (s == NULL)
        return;
    bool was = false;
    int rc = s->ops->key_revoke(s, id, (int64_t)cmx_clock_now_ms(), &was);
    s->ops->close(s);
    if (rc == CMX_ENOTFOUND) {
        cmx_api_error(ctx, 404, "invalid_request_error", "key_not_found", NULL,
                      "No virtual key has the id %s.", id);
        return;
    }
    if (rc != 0)
        return store_failed(ctx);
    cmx_keys_refresher_kick();
    struct cmx_buf b;
    cmx_buf_init(&b, 4096);
    cmx_buf_printf(&b,
                   "{\"id\":\"%s\",\"object\":\"virtual_key\",\"revoked\":true,"
                   "\"already_revoked\":%s}",
                   id, was ? "true" : "false");
    reply(ctx, 200, &b);
}

static void tenants_put(struct cmx_api_ctx *ctx)
{
    struct cmx_http_req *req = ctx->req;
    char *canonical = NULL, name[64], err[1024] = "";
    if (cmx_keystore_tenant_check(req->body.data ? req->body.data : "", req->body.len, &canonical,
                                  name, err, sizeof(err)) != 0) {
        cmx_api_error(ctx, 400, "invalid_request_error", "invalid_tenant", NULL, "%s", err);
        return;
    }
    struct cmx_ledger_store *s = open_store(ctx);
    if (s == NULL) {
        free(canonical);
        return;
    }
    int rc = s->ops->tenant_put(s, name, canonical, (int64_t)cmx_clock_now_ms());
    s->ops->close(s);
    if (rc != 0) {
        free(canonical);
        return store_failed(ctx);
    }
    cmx_keys_refresher_kick();
    struct cmx_buf b;
    cmx_buf_init(&b, 1u << 20);
    cmx_buf_puts(&b, "{\"name\":\"");
    cmx_buf_json_escape(&b, name, strlen(name));
    cmx_buf_printf(&b,
                   "\",\"object\":\"tenant\",\"source\":\"database\",\"overrides_config\":%s,"
                   "\"definition\":%s}",
                   cmx_config_find_tenant(ctx->cfg, name) ? "true" : "false", canonical);
    free(canonical);
    reply(ctx, 201, &b);
}

static void tenant_entry(struct cmx_buf *b, const struct cmx_tenant_cfg *t, bool db, bool overrides)
{
    cmx_buf_puts(b, "{\"name\":\"");
    cmx_buf_json_escape(b, t->name, strlen(t->name));
    cmx_buf_printf(b,
                   "\",\"object\":\"tenant\",\"source\":\"%s\",\"overrides_config\":%s,"
                   "\"definition\":",
                   db ? "database" : "config", overrides ? "true" : "false");
    cmx_keystore_tenant_json(b, t);
    cmx_buf_puts(b, "}");
}

static void tenants_list(struct cmx_api_ctx *ctx)
{
    struct cmx_ledger_store *s = open_store(ctx);
    if (s == NULL)
        return;
    struct cmx_ledger_rows rows;
    int rc = s->ops->tenants_load(s, &rows);
    s->ops->close(s);
    if (rc != 0)
        return store_failed(ctx);
    struct cmx_tenant_set *ts = cmx_tenant_set_build(&rows);
    cmx_ledger_tenant_rows_free(&rows);
    if (ts == NULL) {
        cmx_api_error(ctx, 500, "server_error", NULL, NULL, "Out of memory.");
        return;
    }
    struct cmx_buf b;
    cmx_buf_init(&b, 64u << 20);
    cmx_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    for (size_t i = 0; i < ctx->cfg->n_tenants; i++) {
        const struct cmx_tenant_cfg *t = &ctx->cfg->tenants[i];
        const struct cmx_tenant_cfg *d = cmx_tenant_set_find(ts, t->name);
        if (!first)
            cmx_buf_puts(&b, ",");
        first = false;
        tenant_entry(&b, d ? d : t, d != NULL, d != NULL);
    }
    for (size_t i = 0; i < ts->n; i++) {
        const struct cmx_tenant_cfg *t = &ts->cfgs[i]->tenants[0];
        if (cmx_config_find_tenant(ctx->cfg, t->name) != NULL)
            continue; /* listed in place of the config's */
        if (!first)
            cmx_buf_puts(&b, ",");
        first = false;
        tenant_entry(&b, t, true, false);
    }
    cmx_buf_puts(&b, "]}");
    cmx_tenant_set_unref(ts);
    reply(ctx, 200, &b);
}

static void tenants_delete(struct cmx_api_ctx *ctx, const char *name)
{
    struct cmx_ledger_store *s = open_store(ctx);
    if (s == NULL)
        return;
    int rc = s->ops->tenant_delete(s, name, (int64_t)cmx_clock_now_ms());
    s->ops->close(s);
    if (rc == CMX_ENOTFOUND) {
        bool in_cfg = cmx_config_find_tenant(ctx->cfg, name) != NULL;
        cmx_api_error(ctx, 404, "invalid_request_error", "tenant_not_found", NULL,
                      "No stored tenant is named '%s'.%s", name,
                      in_cfg ? " It is defined in the configuration file; remove it there." : "");
        return;
    }
    if (rc != 0)
        return store_failed(ctx);
    cmx_keys_refresher_kick();
    struct cmx_buf b;
    cmx_buf_init(&b, 4096);
    cmx_buf_puts(&b, "{\"name\":\"");
    cmx_buf_json_escape(&b, name, strlen(name));
    cmx_buf_printf(&b, "\",\"object\":\"tenant\",\"deleted\":true,\"config_applies\":%s}",
                   cmx_config_find_tenant(ctx->cfg, name) ? "true" : "false");
    reply(ctx, 200, &b);
}

/* The last path segment after prefix, percent-decoded into the arena; NULL when absent or
 * when it holds a '/'. */
static const char *segment(struct cmx_api_ctx *ctx, const char *prefix)
{
    size_t n = strlen(prefix);
    if (ctx->req->path_len <= n || strncmp(ctx->req->path, prefix, n) != 0)
        return NULL;
    const char *raw = ctx->req->path + n;
    char *s = cmx_arena_strndup(&ctx->req->arena, raw, ctx->req->path_len - n);
    if (s == NULL || strchr(s, '/') != NULL)
        return NULL;
    cmx_percent_decode(s);
    return s;
}

/* The admin resources: a collection (POST creates or replaces, GET lists) and its items
 * (DELETE). */
static const struct {
    const char *path; /* the collection */
    const char *item; /* the prefix of an item's path */
    void (*post)(struct cmx_api_ctx *ctx);
    void (*list)(struct cmx_api_ctx *ctx);
    void (*remove)(struct cmx_api_ctx *ctx, const char *name);
} resources[] = {
    {"/admin/v1/keys", "/admin/v1/keys/", keys_create, keys_list, keys_revoke},
    {"/admin/v1/tenants", "/admin/v1/tenants/", tenants_put, tenants_list, tenants_delete},
};

bool cmx_admin_keys_route(struct cmx_api_ctx *ctx)
{
    struct cmx_http_req *req = ctx->req;
    enum cmx_http_method m = req->method;
    for (size_t i = 0; i < sizeof(resources) / sizeof(resources[0]); i++) {
        const char *seg;
        if (cmx_api_path_is(req, resources[i].path)) {
            if (m == CMX_HTTP_POST)
                resources[i].post(ctx);
            else if (m == CMX_HTTP_GET || m == CMX_HTTP_HEAD)
                resources[i].list(ctx);
            else
                cmx_api_not_allowed(ctx, "GET, POST");
            return true;
        }
        if ((seg = segment(ctx, resources[i].item)) != NULL) {
            if (m == CMX_HTTP_DELETE)
                resources[i].remove(ctx, seg);
            else
                cmx_api_not_allowed(ctx, "DELETE");
            return true;
        }
    }
    return false;
}
