/* Admission: virtual keys and tenants at the edge (see admit.h). */
#include "api/admit.h"
#include "core/arena.h"
#include "core/clock.h"
#include "tenants/tenants.h"

#include <string.h>

bool cmx_admit_required(const struct cmx_config *cfg, const struct cmx_key_set *keys)
{
    if (cfg->auth != NULL)
        return strcmp(cfg->auth, "keys") == 0;
    return cfg->n_tenants > 0 || (keys != NULL && keys->n > 0);
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
    c->tenant = cmx_config_find_tenant(ctx->cfg, rec->tenant);
    if (c->tenant == NULL) {
        cmx_api_error(ctx, 403, "permission_error", "tenant_not_found", NULL,
                      "The key %s belongs to tenant '%s', which this gateway's configuration "
                      "does not define.",
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
