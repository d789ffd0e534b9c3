/* tenants[]: name, preferred_clouds, allowed_clouds, regions, models (globs), budget
 * {amount, currency, period}, limits {rpm, tpm}. Read with the shared key tables; the
 * cross-checks against providers and models run once everything is loaded. */
#include "config/config_tenants.h"
#include "core/arena.h"

#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static const char *const periods[] = {"day", "week", "month", NULL};

/* One tenant while it is read, with the lines of its keys for later checks. */
struct tenant_load {
    struct cmx_tenant_cfg t;
    const char *raw; /* the name as written, quoted for messages */
};

static int strings_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char ***out,
                      size_t *n, const char *what)
{
    return cmx_config_strings(ctx, val, line, what, out, n);
}

static int preferred_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                        const char *where, void *obj)
{
    struct tenant_load *tl = obj;
    return strings_fn(ctx, val, line, &tl->t.preferred_clouds, &tl->t.n_preferred_clouds,
                      "cloud labels");
}

static int allowed_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                      void *obj)
{
    struct tenant_load *tl = obj;
    return strings_fn(ctx, val, line, &tl->t.allowed_clouds, &tl->t.n_allowed_clouds,
                      "cloud labels");
}

static int regions_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                      void *obj)
{
    struct tenant_load *tl = obj;
    return strings_fn(ctx, val, line, &tl->t.regions, &tl->t.n_regions, "regions");
}

static int models_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                     void *obj)
{
    struct tenant_load *tl = obj;
    return strings_fn(ctx, val, line, &tl->t.models, &tl->t.n_models, "model names or globs");
}

static const struct cmx_config_key budget_keys[] = {
    K_MICROS("amount", struct tenant_load, t.budget_micros, 1, INT64_MAX, REQ),
    K_STR("currency", struct tenant_load, t.budget_currency, 0),
    K_ENUM("period", struct tenant_load, t.budget_period, periods),
    K_END,
};

static const struct cmx_config_key limit_keys[] = {
    K_INT("rpm", struct tenant_load, t.rpm, 1, INT_MAX),
    K_INT("tpm", struct tenant_load, t.tpm, 1, INT_MAX),
    K_END,
};

static const struct cmx_config_key tenant_keys[] = {
    K_STR("name", struct tenant_load, t.name, REQ),
    K_FN("preferred_clouds", preferred_fn, 0),
    K_FN("allowed_clouds", allowed_fn, 0),
    K_FN("regions", regions_fn, 0),
    K_FN("models", models_fn, 0),
    K_MAP("budget", budget_keys),
    K_MAP("limits", limit_keys),
    K_END,
};

static bool valid_name(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static bool valid_currency(const char *s)
{
    return s != NULL && strlen(s) == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' &&
           s[1] <= 'Z' && s[2] >= 'A' && s[2] <= 'Z';
}

int cmx_config_tenants_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                          const char *where, void *obj)
{
    struct cmx_config *cfg = obj;
    struct fy_node *seq, *item;
    size_t count, i = 0;
    void *it = NULL;
    const size_t k_budget = cmx_config_key_index(tenant_keys, "budget");
    const size_t k_name = cmx_config_key_index(tenant_keys, "name");

    if (cmx_config_seq(ctx, val, line, "tenants", &seq, &count) != 0 || count == 0)
        return 0;
    cfg->tenants = cmx_arena_calloc(ctx->arena, count * sizeof(*cfg->tenants));
    if (cfg->tenants == NULL) {
        ctx->nomem = true;
        return -1;
    }
    while (i < count && (item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        int iline = cmx_config_node_line(item, line);
        struct tenant_load tl = {.t = {.line = iline, .budget_micros = -1}};
        struct cmx_config_seen seen;
        char label[CMX_CONFIG_PATH_MAX];

        if (!cmx_config_visit(ctx, iline))
            break;
        size_t mark = cmx_config_path_index(ctx, i);
        snprintf(label, sizeof(label), "tenants[%zu]", i);
        cmx_config_walk(ctx, item, iline, label, tenant_keys, &tl, &seen);
        if (tl.t.name != NULL && !valid_name(tl.t.name)) {
            cmx_config_error(ctx, seen.lines[k_name],
                             "tenant name is invalid: use only letters, digits, '_', '.' and "
                             "'-'");
            tl.t.name = NULL;
        }
        if (seen.present & ((uint64_t)1 << k_budget)) {
            if (tl.t.budget_currency == NULL)
                tl.t.budget_currency = "USD";
            else if (!valid_currency(tl.t.budget_currency))
                cmx_config_error(ctx, seen.lines[k_budget],
                                 "%s.budget.currency must be a three-letter ISO 4217 code "
                                 "such as USD",
                                 ctx->path);
            if (tl.t.budget_period == NULL)
                tl.t.budget_period = "month";
        }
        cfg->tenants[i++] = tl.t;
        cmx_config_path_pop(ctx, mark);
    }
    cfg->n_tenants = i;
    return 0;
}

int cmx_config_limits_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                         const char *where, void *obj)
{
    struct cmx_config *cfg = obj;
    char err[256];
    bool bad;
    int rc;

    cfg->limits_given = true;
    struct fy_node *r = cmx_config_resolve(ctx, val, line, &bad);
    if (bad)
        return -1;
    if (r != NULL && fy_node_get_type(r) == FYNT_MAPPING) {
        const char *keys[8], *vals[8];
        size_t lens[8], n = 0;
        void *it = NULL;
        struct fy_node_pair *pair;
        while ((pair = fy_node_mapping_iterate(r, &it)) != NULL) {
            size_t klen = 0;
            const char *k = cmx_config_scalar(ctx, fy_node_pair_key(pair), &klen);
            struct fy_node *v = fy_node_pair_value(pair);
            int vline = cmx_config_node_line(v, line);
            if (n == 8) {
                cmx_config_error(ctx, vline, "%s has too many keys", ctx->path);
                return -1;
            }
            if (k == NULL || (keys[n] = cmx_arena_strndup(ctx->arena, k, klen)) == NULL) {
                cmx_config_error(ctx, vline, "%s: keys must be plain names", ctx->path);
                return -1;
            }
            size_t mark = cmx_config_path_key(ctx, keys[n]);
            rc = cmx_config_text(ctx, v, vline, &vals[n], &lens[n]);
            cmx_config_path_pop(ctx, mark);
            if (rc != 0)
                return -1;
            n++;
        }
        rc = cmx_limits_config_parse_map(&cfg->limits, keys, vals, lens, n, err, sizeof(err));
    } else {
        const char *text;
        size_t len;
        if (cmx_config_text(ctx, r, line, &text, &len) != 0)
            return -1;
        rc = cmx_limits_config_parse(&cfg->limits, text, len, err, sizeof(err));
    }
    if (rc != 0) {
        /* the parser's messages never contain the password */
        cmx_config_error(ctx, line, "%s", err);
        return -1;
    }
    return 0;
}

static bool has_cloud(const struct cmx_config *cfg, const char *cloud)
{
    for (size_t i = 0; i < cfg->n_providers; i++)
        if (cfg->providers[i].cloud != NULL && strcmp(cfg->providers[i].cloud, cloud) == 0)
            return true;
    return false;
}

static bool has_region(const struct cmx_config *cfg, const char *region)
{
    for (size_t i = 0; i < cfg->n_providers; i++)
        if (cfg->providers[i].region != NULL && strcmp(cfg->providers[i].region, region) == 0)
            return true;
    return false;
}

static bool glob_matches_a_model(const struct cmx_config *cfg, const char *glob)
{
    for (size_t i = 0; i < cfg->n_models; i++)
        if (cfg->models[i].name != NULL && fnmatch(glob, cfg->models[i].name, 0) == 0)
            return true;
    return false;
}

static bool in_list(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

void cmx_config_tenants_finish(struct cmx_config_ctx *ctx)
{
    struct cmx_config *cfg = ctx->cfg;

    for (size_t i = 0; i < cfg->n_tenants; i++) {
        const struct cmx_tenant_cfg *t = &cfg->tenants[i];
        const char *name = t->name ? t->name : "?";

        for (size_t j = 0; j < i; j++)
            if (t->name != NULL && cfg->tenants[j].name != NULL &&
                strcmp(t->name, cfg->tenants[j].name) == 0)
                cmx_config_error(ctx, t->line, "tenant \"%s\" is defined twice (first at line %d)",
                                 name, cfg->tenants[j].line);
        for (size_t k = 0; k < t->n_preferred_clouds; k++) {
            const char *c = t->preferred_clouds[k];
            if (t->n_allowed_clouds > 0 && !in_list(t->allowed_clouds, t->n_allowed_clouds, c))
                cmx_config_error(ctx, t->line,
                                 "tenant \"%s\": preferred cloud \"%s\" is not in its "
                                 "allowed_clouds",
                                 name, c);
            else if (!has_cloud(cfg, c))
                cmx_config_warn(ctx, t->line,
                                "tenant \"%s\": preferred cloud \"%s\" is not the cloud of any "
                                "provider",
                                name, c);
        }
        for (size_t k = 0; k < t->n_allowed_clouds; k++)
            if (!has_cloud(cfg, t->allowed_clouds[k]))
                cmx_config_warn(ctx, t->line,
                                "tenant \"%s\": allowed cloud \"%s\" is not the cloud of any "
                                "provider",
                                name, t->allowed_clouds[k]);
        for (size_t k = 0; k < t->n_regions; k++)
            if (!has_region(cfg, t->regions[k]))
                cmx_config_warn(ctx, t->line,
                                "tenant \"%s\": region \"%s\" is not the region of any provider",
                                name, t->regions[k]);
        for (size_t k = 0; k < t->n_models; k++)
            if (!glob_matches_a_model(cfg, t->models[k]))
                cmx_config_warn(ctx, t->line, "tenant \"%s\": models entry \"%s\" matches no model",
                                name, t->models[k]);
    }
}
