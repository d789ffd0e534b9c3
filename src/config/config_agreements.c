/* The maker, products and agreements sections (docs/agreements.md): read with the
 * table-driven walker into loader structs that keep names as written, then resolved and
 * checked across sections by cmx_config_agreements_finish(), which also precomputes the
 * decisions (src/agreements/engine.c). Dates are always read as text, so YAML's own
 * timestamp typing never matters. */
#include "config/config_agreements.h"
#include "agreements/agreements_int.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/decimal.h"
#include "core/err.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- table helpers (as in config.c) ---------------------------------------------------- */

/* Keys that would make a term conditional. Terms depend on dates only, so each of these is
 * rejected with a message that says so (rather than as an unknown key). */
#define CONDITION_ROWS                                                                             \
    K_FN("trigger", condition_fn, 0), K_FN("triggers", condition_fn, 0),                           \
        K_FN("condition", condition_fn, 0), K_FN("conditions", condition_fn, 0),                   \
        K_FN("when", condition_fn, 0), K_FN("unless", condition_fn, 0),                            \
        K_FN("milestone", condition_fn, 0), K_FN("milestones", condition_fn, 0),                   \
        K_FN("upon", condition_fn, 0), K_FN("event", condition_fn, 0),                             \
        K_FN("depends_on", condition_fn, 0)

#define HOLDBACK_MAX 36500 /* days: a century */

/* ---- loader structs ---------------------------------------------------------------- */

/* A name given in the file, resolved once every section is read. */
struct ref {
    const char *name; /* expanded text (arena), NULL when absent or rejected */
    const char *raw;  /* as written, quoted for messages */
    const char *path; /* "agreements[0].versions[1].licences[0].products[2]" */
    int line;         /* line of the value */
};

struct refs {
    struct ref *v; /* n entries (arena) */
    size_t n;
};

struct scope_load {
    enum cmx_agr_scope_kind kind; /* list, "*" or core */
    struct refs names;            /* LIST: the product names */
    bool given;                   /* the key was present and read */
};

struct launch_load {
    struct ref cloud; /* the key */
    int64_t at;       /* launch instant */
};

struct product_load {
    struct cmx_agr_product p;     /* name, core, caps, line (offsets of the key table) */
    struct launch_load *launches; /* launches, file order */
    size_t n_launches;
    bool caps_given; /* capabilities: read */
    int name_line;   /* line of name: */
    const char *raw; /* name as written, quoted */
};

struct optout_load {
    struct cmx_agr_optout o; /* caps, since, line */
    struct refs products;    /* product: a name or a list (n 0 when absent) */
    bool has_since;          /* since: given */
    bool caps_given;         /* capability: given and read */
};

struct licence_load {
    struct cmx_agr_licence l; /* exclusive, from, until, line */
    struct ref licensee;      /* licensee: */
    struct scope_load scope;  /* products: */
    bool has_from;            /* from: given */
    bool until_ok;            /* until: read */
    int until_line;           /* line of until: */
};

struct share_load {
    struct cmx_agr_revshare s; /* payee, rate, cap, currency, from, until, line */
    struct refs clouds;        /* base.clouds */
    struct refs products;      /* base.products */
    bool has_from;             /* from: given */
    bool until_ok;             /* until: read */
    int until_line;            /* line of until: */
};

struct version_load {
    struct cmx_agr_version v; /* effective, holdback_days, line */
    bool effective_ok;        /* effective: read */
    int effective_line;       /* line of effective: */
    struct ref primary;       /* primary_cloud: */
    int primary_line;         /* line of primary_cloud:, 0 when absent */
    bool fl_given;            /* first_launch: given */
    int fl_line;              /* line of first_launch: */
    struct scope_load fl_scope;
    struct optout_load *opt_outs;
    size_t n_opt_outs;
    struct licence_load *licences;
    size_t n_licences;
    struct share_load *shares;
    size_t n_shares;
};

struct agreement_load {
    struct cmx_agr_agreement a; /* id, line */
    int id_line;                /* line of id: */
    const char *raw;            /* id as written, quoted */
    struct version_load *versions;
    size_t n_versions;
};

struct model_ref {
    size_t model;   /* index in cfg->models */
    struct ref ref; /* models[].product */
};

struct load {
    struct ref maker; /* maker: */
    struct product_load *products;
    size_t n_products;
    bool products_given;
    struct agreement_load *agreements;
    size_t n_agreements;
    bool agreements_given;
    struct model_ref *models; /* models that name a product (arena, grown by doubling) */
    size_t n_models, cap_models;
};

/* ---- helpers ------------------------------------------------------------------------ */

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

static void *nomem(struct cmx_config_ctx *ctx)
{
    ctx->nomem = true;
    return NULL;
}

/* The loader state, created with cfg->agreements by the first handler that runs. */
static struct load *get_load(struct cmx_config_ctx *ctx)
{
    struct cmx_config *cfg = ctx->cfg;
    if (cfg->agreements == NULL) {
        struct cmx_agreements *a = cmx_arena_calloc(ctx->arena, sizeof(*a));
        struct load *l = cmx_arena_calloc(ctx->arena, sizeof(*l));
        if (a == NULL || l == NULL)
            return nomem(ctx);
        a->maker_cloud = -1;
        a->load = l;
        cfg->agreements = a;
    }
    return cfg->agreements->load;
}

/* A list value: null reads as empty; anything but a sequence is an error (-1). */
static int get_seq(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *what,
                   struct fy_node **seq, size_t *count)
{
    return cmx_config_seq(ctx, val, line, what, seq, count);
}

/* The raw (unexpanded) text of a scalar, quoted for messages, in the arena. */
static const char *raw_quoted(struct cmx_config_ctx *ctx, struct fy_node *n)
{
    char q[CMX_CONFIG_QUOTE_MAX * 2 + 8];
    size_t len = 0;
    const char *raw;

    if (n != NULL && fy_node_is_alias(n))
        n = fy_node_resolve_alias(n);
    raw = cmx_config_scalar(ctx, n, &len);
    cmx_config_quote(q, sizeof(q), raw ? raw : "", raw ? len : 0);
    char *copy = cmx_arena_strndup(ctx->arena, q, strlen(q));
    if (copy == NULL)
        return nomem(ctx);
    return copy;
}

/* Reads a non-empty name at ctx->path into r. 0 or -1 (reported). */
static int read_ref(struct cmx_config_ctx *ctx, struct fy_node *val, int line, struct ref *r)
{
    const char *text;
    size_t len;

    memset(r, 0, sizeof(*r));
    r->line = line;
    if (cmx_config_text(ctx, val, line, &text, &len) != 0)
        return -1;
    if (len == 0) {
        cmx_config_error(ctx, line, "%s must not be empty", ctx->path);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f) {
            cmx_config_bad_value(ctx, val, line, 0,
                                 "must not contain control characters or line breaks");
            return -1;
        }
    }
    r->raw = raw_quoted(ctx, val);
    r->path = cmx_arena_strndup(ctx->arena, ctx->path, ctx->path_len);
    if (r->raw == NULL || r->path == NULL)
        return -1;
    r->name = text;
    return 0;
}

/* Reads a list of names (a single name is a list of one) into out. */
static int read_refs(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *what,
                     struct refs *out)
{
    struct fy_node *seq, *item, *r;
    size_t count, i = 0;
    void *it = NULL;
    bool bad;

    out->v = NULL;
    out->n = 0;
    r = cmx_config_resolve(ctx, val, line, &bad);
    if (bad)
        return -1;
    if (r != NULL && fy_node_get_type(r) == FYNT_SCALAR && !cmx_config_is_null(r)) {
        out->v = cmx_arena_calloc(ctx->arena, sizeof(*out->v));
        if (out->v == NULL)
            return nomem(ctx), -1;
        if (read_ref(ctx, r, line, &out->v[0]) != 0)
            return -1;
        out->n = 1;
        return 0;
    }
    if (get_seq(ctx, r, line, what, &seq, &count) != 0)
        return -1;
    if (count == 0)
        return 0;
    out->v = cmx_arena_calloc(ctx->arena, count * sizeof(*out->v));
    if (out->v == NULL)
        return nomem(ctx), -1;
    while (i < count && (item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        int iline = cmx_config_node_line(item, line);
        if (!cmx_config_visit(ctx, iline))
            return -1;
        size_t mark = cmx_config_path_index(ctx, i);
        if (read_ref(ctx, item, iline, &out->v[out->n]) == 0)
            out->n++;
        cmx_config_path_pop(ctx, mark);
        i++;
    }
    return 0;
}

/* products: "*", core (when allowed), one name, or a list of names. */
static int read_scope(struct cmx_config_ctx *ctx, struct fy_node *val, int line, bool allow_core,
                      struct scope_load *s)
{
    struct fy_node *r;
    bool bad;

    r = cmx_config_resolve(ctx, val, line, &bad);
    if (bad)
        return -1;
    if (r != NULL && fy_node_get_type(r) == FYNT_MAPPING) {
        cmx_config_error(ctx, line, "%s must be \"*\"%s or a list of product names", ctx->path,
                         allow_core ? ", core" : "");
        return -1;
    }
    if (r != NULL && fy_node_get_type(r) == FYNT_SCALAR) {
        const char *text;
        size_t len;
        if (cmx_config_text(ctx, r, line, &text, &len) != 0)
            return -1;
        if (strcmp(text, "*") == 0 || (allow_core && strcmp(text, "core") == 0)) {
            s->kind = text[0] == '*' ? CMX_AGR_SCOPE_ALL : CMX_AGR_SCOPE_CORE;
            s->given = true;
            return 0;
        }
        if (len == 0) {
            cmx_config_error(ctx, line, "%s must be \"*\"%s or a list of product names", ctx->path,
                             allow_core ? ", core" : "");
            return -1;
        }
    }
    s->kind = CMX_AGR_SCOPE_LIST;
    if (read_refs(ctx, r, line, "product names", &s->names) != 0)
        return -1;
    s->given = true;
    return 0;
}

/* A date (date_only) or a date / date-time, as text. */
static int read_time(struct cmx_config_ctx *ctx, struct fy_node *val, int line, bool date_only,
                     int64_t *out)
{
    const char *text;
    size_t len;
    int rc;

    if (cmx_config_text(ctx, val, line, &text, &len) != 0)
        return -1;
    rc = date_only ? cmx_clock_parse_date(text, len, out)
                   : cmx_clock_parse_iso(text, len, out, NULL);
    if (rc != 0) {
        cmx_config_bad_value(ctx, val, line, 0,
                             date_only ? "must be a date YYYY-MM-DD (UTC)"
                                       : "must be a date YYYY-MM-DD or a UTC date-time "
                                         "YYYY-MM-DDTHH:MM:SSZ");
        return -1;
    }
    return 0;
}

/* until: a date, in force through its last millisecond. */
static int read_until(struct cmx_config_ctx *ctx, struct fy_node *val, int line, int64_t *out)
{
    int64_t day;
    if (read_time(ctx, val, line, true, &day) != 0)
        return -1;
    *out = day + CMX_CLOCK_DAY_MS - 1;
    return 0;
}

static int condition_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                        const char *where, void *obj)
{
    cmx_config_error(ctx, line,
                     "%s: terms depend on dates only; milestone triggers and other conditions "
                     "are not supported (give the term an effective, from or until date, or "
                     "add an amendment that takes effect on the date)",
                     ctx->path);
    return -1;
}

/* A capability name or a list of them into a mask. */
static int read_caps(struct cmx_config_ctx *ctx, struct fy_node *val, int line, unsigned *caps)
{
    struct refs names;
    int rc = 0;

    *caps = 0;
    if (read_refs(ctx, val, line, "capabilities", &names) != 0)
        return -1;
    for (size_t i = 0; i < names.n; i++) {
        unsigned bit = cmx_cap_parse(names.v[i].name, strlen(names.v[i].name));
        if (bit == 0) {
            cmx_config_error(ctx, names.v[i].line,
                             "%s: \"%s\" is not a known capability (valid: chat, embeddings, "
                             "tools, vision, audio)",
                             names.v[i].path, names.v[i].raw);
            rc = -1;
            continue;
        }
        *caps |= bit;
    }
    if (rc == 0 && names.n == 0) {
        cmx_config_error(ctx, line, "%s must name at least one capability", ctx->path);
        return -1;
    }
    return rc;
}

/* ---- maker, models[].product -------------------------------------------------------- */

int cmx_config_maker_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                        const char *where, void *obj)
{
    struct load *l = get_load(ctx);
    if (l == NULL)
        return -1;
    return read_ref(ctx, val, line, &l->maker);
}

int cmx_config_model_product_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                                const char *where, void *obj)
{
    struct cmx_model_cfg *m = obj;
    struct load *l = get_load(ctx);
    struct ref r;

    if (l == NULL || read_ref(ctx, val, line, &r) != 0)
        return -1;
    if (l->n_models == l->cap_models) {
        size_t cap = l->cap_models ? l->cap_models * 2 : 16;
        struct model_ref *v = cmx_arena_alloc(ctx->arena, cap * sizeof(*v));
        if (v == NULL)
            return nomem(ctx), -1;
        if (l->n_models)
            memcpy(v, l->models, l->n_models * sizeof(*v));
        l->models = v;
        l->cap_models = cap;
    }
    l->models[l->n_models++] =
        (struct model_ref){.model = (size_t)(m - ctx->cfg->models), .ref = r};
    m->product = (char *)r.name;
    return 0;
}

/* ---- products ------------------------------------------------------------------------ */

static int capabilities_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                           const char *where, void *obj)
{
    struct product_load *pl = obj;
    if (read_caps(ctx, val, line, &pl->p.caps) != 0)
        return -1;
    pl->caps_given = true;
    return 0;
}

static int launches_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                       void *obj)
{
    struct product_load *pl = obj;
    struct fy_node *n;
    struct fy_node_pair *pair;
    void *it = NULL;
    bool bad;

    n = cmx_config_resolve(ctx, val, line, &bad);
    if (bad)
        return -1;
    if (cmx_config_is_null(n))
        return 0;
    if (fy_node_get_type(n) != FYNT_MAPPING) {
        cmx_config_error(ctx, line,
                         "%s must be a mapping of clouds to launch dates, e.g. { azure: "
                         "2026-08-07, aws: 2026-09-01 }",
                         ctx->path);
        return -1;
    }
    size_t count = (size_t)fy_node_mapping_item_count(n);
    pl->launches = cmx_arena_calloc(ctx->arena, (count ? count : 1) * sizeof(*pl->launches));
    if (pl->launches == NULL)
        return nomem(ctx), -1;
    while ((pair = fy_node_mapping_iterate(n, &it)) != NULL && pl->n_launches < count) {
        struct fy_node *key = fy_node_pair_key(pair);
        int kline = cmx_config_node_line(key, line);
        size_t klen = 0;
        const char *ktext;
        char name[128];

        if (!cmx_config_visit(ctx, kline))
            return -1;
        key = cmx_config_resolve(ctx, key, kline, &bad);
        ktext = bad ? NULL : cmx_config_scalar(ctx, key, &klen);
        if (ktext == NULL || klen == 0 || klen >= sizeof(name) ||
            memchr(ktext, '\0', klen) != NULL) {
            cmx_config_error(ctx, kline, "%s: keys must be cloud labels", ctx->path);
            continue;
        }
        memcpy(name, ktext, klen);
        name[klen] = '\0';
        size_t mark = cmx_config_path_key(ctx, name);
        struct launch_load *ll = &pl->launches[pl->n_launches];
        bool dup = false;
        for (size_t i = 0; i < pl->n_launches; i++) {
            if (strcmp(pl->launches[i].cloud.name, name) == 0) {
                cmx_config_error(ctx, kline, "%s: %s is given twice (first at line %d)", ctx->path,
                                 name, pl->launches[i].cloud.line);
                dup = true;
            }
        }
        if (!dup && read_time(ctx, fy_node_pair_value(pair), kline, false, &ll->at) == 0) {
            ll->cloud.name = cmx_arena_strndup(ctx->arena, name, klen);
            ll->cloud.raw = raw_quoted(ctx, key);
            ll->cloud.path = cmx_arena_strndup(ctx->arena, ctx->path, ctx->path_len);
            ll->cloud.line = kline;
            if (ll->cloud.name == NULL || ll->cloud.raw == NULL || ll->cloud.path == NULL) {
                cmx_config_path_pop(ctx, mark);
                return nomem(ctx), -1;
            }
            pl->n_launches++;
        }
        cmx_config_path_pop(ctx, mark);
    }
    return 0;
}

static const struct cmx_config_key product_keys[] = {
    K_STR("name", struct product_load, p.name, REQ),
    K_BOOL("core", struct product_load, p.core),
    K_FN("capabilities", capabilities_fn, 0),
    K_FN("launches", launches_fn, 0),
    K_END,
};

/* "what \"name\"" when the entry has a plain scalar name under key, else "list[i]". */
static void label_of(struct cmx_config_ctx *ctx, struct fy_node *item, const char *key,
                     const char *what, const char *list, size_t i, char *dst, size_t cap,
                     const char **raw_out)
{
    struct fy_node *n = item, *v;
    const char *raw = NULL;

    if (n != NULL && fy_node_is_alias(n))
        n = fy_node_resolve_alias(n);
    if (n != NULL && fy_node_get_type(n) == FYNT_MAPPING) {
        v = fy_node_mapping_lookup_by_string(n, key, FY_NT);
        if (v != NULL && fy_node_is_alias(v))
            v = fy_node_resolve_alias(v);
        if (v != NULL && fy_node_get_type(v) == FYNT_SCALAR && !cmx_config_is_null(v))
            raw = raw_quoted(ctx, v);
    }
    if (raw != NULL)
        snprintf(dst, cap, "%s \"%s\"", what, raw);
    else
        snprintf(dst, cap, "%s[%zu]", list, i);
    if (raw_out != NULL)
        *raw_out = raw;
}

int cmx_config_products_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                           const char *where, void *obj)
{
    struct load *l = get_load(ctx);
    struct fy_node *seq, *item;
    size_t count, i = 0;
    void *it = NULL;
    const size_t k_name = cmx_config_key_index(product_keys, "name");
    struct cmx_config_seen seen;

    if (l == NULL)
        return -1;
    l->products_given = true;
    if (get_seq(ctx, val, line, "products", &seq, &count) != 0 || count == 0)
        return 0;
    l->products = cmx_arena_calloc(ctx->arena, count * sizeof(*l->products));
    if (l->products == NULL)
        return nomem(ctx), -1;
    while (i < count && (item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        int iline = cmx_config_node_line(item, line);
        struct product_load *pl = &l->products[i];
        char label[CMX_CONFIG_PATH_MAX];

        if (!cmx_config_visit(ctx, iline))
            break;
        pl->p.line = iline;
        size_t mark = cmx_config_path_index(ctx, i);
        label_of(ctx, item, "name", "product", "products", i, label, sizeof(label), &pl->raw);
        cmx_config_walk(ctx, item, iline, label, product_keys, pl, &seen);
        pl->name_line = seen.lines[k_name];
        if (!pl->caps_given)
            pl->p.caps = CMX_CAP_CHAT;
        if (pl->p.name != NULL && !valid_name(pl->p.name)) {
            cmx_config_error(ctx, pl->name_line,
                             "product name \"%s\" is invalid: use only letters, digits, '_', "
                             "'.' and '-'",
                             pl->raw ? pl->raw : "");
            pl->p.name = NULL;
        }
        cmx_config_path_pop(ctx, mark);
        i++;
    }
    l->n_products = i;
    return 0;
}

/* ---- agreement terms ------------------------------------------------------------------ */

static int optout_product_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                             const char *where, void *obj)
{
    struct optout_load *o = obj;
    return read_refs(ctx, val, line, "product names", &o->products);
}

static int optout_caps_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                          const char *where, void *obj)
{
    struct optout_load *o = obj;
    if (read_caps(ctx, val, line, &o->o.caps) != 0)
        return -1;
    o->caps_given = true;
    return 0;
}

static int optout_since_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                           const char *where, void *obj)
{
    struct optout_load *o = obj;
    if (read_time(ctx, val, line, false, &o->o.since) != 0)
        return -1;
    o->has_since = true;
    return 0;
}

static const struct cmx_config_key optout_keys[] = {
    K_FN("product", optout_product_fn, 0),
    K_FN("capability", optout_caps_fn, 0),
    K_FN("since", optout_since_fn, 0),
    CONDITION_ROWS,
    K_END,
};

static int opt_outs_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                       void *obj)
{
    struct version_load *vl = obj;
    struct fy_node *seq, *item;
    size_t count, i = 0;
    void *it = NULL;
    struct cmx_config_seen seen;
    const uint64_t product_bit = (uint64_t)1 << cmx_config_key_index(optout_keys, "product");
    const uint64_t named =
        product_bit | ((uint64_t)1 << cmx_config_key_index(optout_keys, "capability"));

    if (get_seq(ctx, val, line, "opt-outs", &seq, &count) != 0 || count == 0)
        return 0;
    vl->opt_outs = cmx_arena_calloc(ctx->arena, count * sizeof(*vl->opt_outs));
    if (vl->opt_outs == NULL)
        return nomem(ctx), -1;
    while (i < count && (item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        int iline = cmx_config_node_line(item, line);
        struct optout_load *o = &vl->opt_outs[i];
        char label[CMX_CONFIG_PATH_MAX + 64];

        if (!cmx_config_visit(ctx, iline))
            break;
        o->o.line = iline;
        o->o.product = -1;
        size_t mark = cmx_config_path_index(ctx, i);
        snprintf(label, sizeof(label), "opt_outs[%zu] of %s", i, where);
        int errors = ctx->errors;
        cmx_config_walk(ctx, item, iline, label, optout_keys, o, &seen);
        if (!(seen.present & named) && ctx->errors == errors)
            cmx_config_error(ctx, iline,
                             "%s must name a product, a capability, or both (e.g. { product: "
                             "gpt-realtime } or { capability: audio })",
                             ctx->path);
        else if ((seen.present & product_bit) && o->products.n == 0 && ctx->errors == errors)
            cmx_config_error(ctx, iline, "%s.product must name at least one product", ctx->path);
        cmx_config_path_pop(ctx, mark);
        i++;
    }
    vl->n_opt_outs = i;
    return 0;
}

static int fl_products_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                          const char *where, void *obj)
{
    struct version_load *vl = obj;
    return read_scope(ctx, val, line, true, &vl->fl_scope);
}

static const struct cmx_config_key first_launch_keys[] = {
    K_FN("products", fl_products_fn, 0),
    K_INT("holdback_days", struct version_load, v.holdback_days, 0, HOLDBACK_MAX),
    K_FN("opt_outs", opt_outs_fn, 0),
    CONDITION_ROWS,
    K_END,
};

static int licensee_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                       void *obj)
{
    struct licence_load *ll = obj;
    return read_ref(ctx, val, line, &ll->licensee);
}

static int licence_products_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                               const char *where, void *obj)
{
    struct licence_load *ll = obj;
    return read_scope(ctx, val, line, false, &ll->scope);
}

static int licence_from_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                           const char *where, void *obj)
{
    struct licence_load *ll = obj;
    if (read_time(ctx, val, line, false, &ll->l.from) != 0)
        return -1;
    ll->has_from = true;
    return 0;
}

static int licence_until_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                            const char *where, void *obj)
{
    struct licence_load *ll = obj;
    ll->until_line = line;
    if (read_until(ctx, val, line, &ll->l.until) != 0)
        return -1;
    ll->until_ok = true;
    return 0;
}

static const struct cmx_config_key licence_keys[] = {
    K_FN("licensee", licensee_fn, REQ),
    K_FN("products", licence_products_fn, REQ),
    K_FN("from", licence_from_fn, 0),
    K_FN("until", licence_until_fn, REQ),
    K_BOOL("exclusive", struct licence_load, l.exclusive),
    CONDITION_ROWS,
    K_END,
};

static int rate_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                   void *obj)
{
    struct share_load *sl = obj;
    const char *text;
    size_t len;
    int64_t v;

    if (cmx_config_text(ctx, val, line, &text, &len) != 0)
        return -1;
    if (cmx_decimal_parse(text, len, 6, &v) != 0) {
        cmx_config_bad_value(ctx, val, line, 0,
                             "must be a decimal rate between 0 and 1 (e.g. 0.20) with at most 6 "
                             "fraction digits");
        return -1;
    }
    if (v < 0 || v > 1000000) {
        cmx_config_bad_value(ctx, val, line, 0, "is outside [0, 1] (0.20 means 20%)");
        return -1;
    }
    sl->s.rate_ppm = v;
    return 0;
}

static int cap_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                  void *obj)
{
    struct share_load *sl = obj;
    const char *text;
    size_t len;
    int64_t v;

    if (cmx_config_text(ctx, val, line, &text, &len) != 0)
        return -1;
    if (cmx_decimal_parse(text, len, 6, &v) != 0 || v < 0) {
        cmx_config_bad_value(ctx, val, line, 0,
                             "must be a decimal amount >= 0 (e.g. \"1000000.00\") with at most 6 "
                             "fraction digits");
        return -1;
    }
    sl->s.has_cap = true;
    sl->s.cap_micros = v;
    return 0;
}

static int currency_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                       void *obj)
{
    struct share_load *sl = obj;
    const char *text;
    size_t len;

    if (cmx_config_text(ctx, val, line, &text, &len) != 0)
        return -1;
    if (len != 3 || text[0] < 'A' || text[0] > 'Z' || text[1] < 'A' || text[1] > 'Z' ||
        text[2] < 'A' || text[2] > 'Z') {
        cmx_config_bad_value(ctx, val, line, 0, "must be an ISO 4217 code such as USD");
        return -1;
    }
    sl->s.currency = (char *)text;
    return 0;
}

static int base_clouds_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                          const char *where, void *obj)
{
    struct share_load *sl = obj;
    if (read_refs(ctx, val, line, "clouds", &sl->clouds) != 0)
        return -1;
    if (sl->clouds.n == 0) {
        cmx_config_error(ctx, line, "%s must list at least one cloud", ctx->path);
        return -1;
    }
    return 0;
}

static int base_products_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                            const char *where, void *obj)
{
    struct share_load *sl = obj;
    if (read_refs(ctx, val, line, "product names", &sl->products) != 0)
        return -1;
    if (sl->products.n == 0) {
        cmx_config_error(ctx, line, "%s must list at least one product", ctx->path);
        return -1;
    }
    return 0;
}

static const struct cmx_config_key base_keys[] = {
    K_FN("clouds", base_clouds_fn, 0),
    K_FN("products", base_products_fn, 0),
    CONDITION_ROWS,
    K_END,
};

static int base_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                   void *obj)
{
    struct share_load *sl = obj;
    struct cmx_config_seen seen;
    struct fy_node *r;
    bool bad;
    char sub[CMX_CONFIG_PATH_MAX + 64];

    r = cmx_config_resolve(ctx, val, line, &bad);
    if (bad)
        return -1;
    if (r != NULL && fy_node_get_type(r) == FYNT_SCALAR && !cmx_config_is_null(r)) {
        const char *text;
        size_t len;
        if (cmx_config_text(ctx, r, line, &text, &len) != 0)
            return -1;
        if (strcmp(text, "all") != 0) {
            cmx_config_bad_value(
                ctx, r, line, 0,
                "must be all or a mapping { clouds: [...] } / { products: [...] }");
            return -1;
        }
        sl->s.base_all = true;
        return 0;
    }
    if (r == NULL || fy_node_get_type(r) != FYNT_MAPPING) {
        cmx_config_error(ctx, line,
                         "%s must be all or a mapping { clouds: [...] } / { products: [...] }",
                         ctx->path);
        return -1;
    }
    snprintf(sub, sizeof(sub), "\"base\" of %s", where);
    cmx_config_walk(ctx, r, cmx_config_node_line(r, line), sub, base_keys, sl, &seen);
    if (seen.present == 0) {
        cmx_config_error(ctx, line, "%s must name clouds, products, or both", ctx->path);
        return -1;
    }
    return 0;
}

static int share_from_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                         const char *where, void *obj)
{
    struct share_load *sl = obj;
    if (read_time(ctx, val, line, false, &sl->s.from) != 0)
        return -1;
    sl->has_from = true;
    return 0;
}

static int share_until_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                          const char *where, void *obj)
{
    struct share_load *sl = obj;
    sl->until_line = line;
    if (read_until(ctx, val, line, &sl->s.until) != 0)
        return -1;
    sl->until_ok = true;
    return 0;
}

static const struct cmx_config_key share_keys[] = {
    K_STR("payee", struct share_load, s.payee, REQ),
    K_FN("rate", rate_fn, REQ),
    K_FN("base", base_fn, REQ),
    K_FN("from", share_from_fn, 0),
    K_FN("until", share_until_fn, REQ),
    K_FN("cap", cap_fn, 0),
    K_FN("currency", currency_fn, 0),
    CONDITION_ROWS,
    K_END,
};

/* Reads a list of term mappings of elem_size bytes each with keys; init(elem, line). */
static int read_terms(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                      const char *list, const char *what, const struct cmx_config_key *keys,
                      size_t elem_size, size_t line_off, void **out, size_t *n)
{
    struct fy_node *seq, *item;
    size_t count, i = 0;
    void *it = NULL;
    char *v;

    *out = NULL;
    *n = 0;
    if (get_seq(ctx, val, line, what, &seq, &count) != 0 || count == 0)
        return 0;
    v = cmx_arena_calloc(ctx->arena, count * elem_size);
    if (v == NULL)
        return nomem(ctx), -1;
    while (i < count && (item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        int iline = cmx_config_node_line(item, line);
        char label[CMX_CONFIG_PATH_MAX + 64];
        void *elem = v + i * elem_size;

        if (!cmx_config_visit(ctx, iline))
            break;
        memcpy((char *)elem + line_off, &iline, sizeof(iline));
        size_t mark = cmx_config_path_index(ctx, i);
        snprintf(label, sizeof(label), "%s[%zu] of %s", list, i, where);
        cmx_config_walk(ctx, item, iline, label, keys, elem, NULL);
        cmx_config_path_pop(ctx, mark);
        i++;
    }
    *out = v;
    *n = i;
    return 0;
}

static int licences_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                       void *obj)
{
    struct version_load *vl = obj;
    void *v;
    int rc = read_terms(ctx, val, line, where, "licences", "licences", licence_keys,
                        sizeof(struct licence_load), offsetof(struct licence_load, l.line), &v,
                        &vl->n_licences);
    vl->licences = v;
    return rc;
}

static int shares_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                     void *obj)
{
    struct version_load *vl = obj;
    void *v;
    int rc = read_terms(ctx, val, line, where, "revenue_shares", "revenue shares", share_keys,
                        sizeof(struct share_load), offsetof(struct share_load, s.line), &v,
                        &vl->n_shares);
    vl->shares = v;
    return rc;
}

static int effective_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                        const char *where, void *obj)
{
    struct version_load *vl = obj;
    vl->effective_line = line;
    if (read_time(ctx, val, line, false, &vl->v.effective) != 0)
        return -1;
    vl->effective_ok = true;
    return 0;
}

static int primary_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                      void *obj)
{
    struct version_load *vl = obj;
    vl->primary_line = line;
    return read_ref(ctx, val, line, &vl->primary);
}

static int first_launch_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                           const char *where, void *obj)
{
    struct version_load *vl = obj;
    char sub[CMX_CONFIG_PATH_MAX + 64];

    vl->fl_given = true;
    vl->fl_line = line;
    vl->fl_scope.kind = CMX_AGR_SCOPE_CORE; /* default: core products */
    snprintf(sub, sizeof(sub), "\"first_launch\" of %s", where);
    cmx_config_walk(ctx, val, line, sub, first_launch_keys, vl, NULL);
    return 0;
}

static const struct cmx_config_key version_keys[] = {
    K_FN("effective", effective_fn, REQ),
    K_FN("primary_cloud", primary_fn, 0),
    K_FN("first_launch", first_launch_fn, 0),
    K_FN("licences", licences_fn, 0),
    K_FN("revenue_shares", shares_fn, 0),
    CONDITION_ROWS,
    K_END,
};

static int versions_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                       void *obj)
{
    struct agreement_load *al = obj;
    struct fy_node *seq, *item;
    size_t count, i = 0;
    void *it = NULL;

    if (get_seq(ctx, val, line, "versions", &seq, &count) != 0)
        return -1;
    if (count == 0) {
        cmx_config_error(ctx, line, "%s must list at least one version", ctx->path);
        return -1;
    }
    al->versions = cmx_arena_calloc(ctx->arena, count * sizeof(*al->versions));
    if (al->versions == NULL)
        return nomem(ctx), -1;
    while (i < count && (item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        int iline = cmx_config_node_line(item, line);
        struct version_load *vl = &al->versions[i];
        char label[CMX_CONFIG_PATH_MAX + 64];

        if (!cmx_config_visit(ctx, iline))
            break;
        vl->v.line = iline;
        vl->v.primary = -1;
        size_t mark = cmx_config_path_index(ctx, i);
        snprintf(label, sizeof(label), "versions[%zu] of %s", i, where);
        cmx_config_walk(ctx, item, iline, label, version_keys, vl, NULL);
        cmx_config_path_pop(ctx, mark);
        i++;
    }
    al->n_versions = i;
    return 0;
}

static const struct cmx_config_key agreement_keys[] = {
    K_STR("id", struct agreement_load, a.id, REQ),
    K_FN("versions", versions_fn, REQ),
    CONDITION_ROWS,
    K_END,
};

int cmx_config_agreements_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                             const char *where, void *obj)
{
    struct load *l = get_load(ctx);
    struct fy_node *seq, *item;
    size_t count, i = 0;
    void *it = NULL;
    struct cmx_config_seen seen;
    const size_t k_id = cmx_config_key_index(agreement_keys, "id");

    if (l == NULL)
        return -1;
    l->agreements_given = true;
    if (get_seq(ctx, val, line, "agreements", &seq, &count) != 0 || count == 0)
        return 0;
    l->agreements = cmx_arena_calloc(ctx->arena, count * sizeof(*l->agreements));
    if (l->agreements == NULL)
        return nomem(ctx), -1;
    while (i < count && (item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        int iline = cmx_config_node_line(item, line);
        struct agreement_load *al = &l->agreements[i];
        char label[CMX_CONFIG_PATH_MAX];

        if (!cmx_config_visit(ctx, iline))
            break;
        al->a.line = iline;
        size_t mark = cmx_config_path_index(ctx, i);
        label_of(ctx, item, "id", "agreement", "agreements", i, label, sizeof(label), &al->raw);
        cmx_config_walk(ctx, item, iline, label, agreement_keys, al, &seen);
        al->id_line = seen.lines[k_id];
        if (al->a.id != NULL && !valid_name(al->a.id)) {
            cmx_config_error(ctx, al->id_line,
                             "agreement id \"%s\" is invalid: use only letters, digits, '_', "
                             "'.' and '-'",
                             al->raw ? al->raw : "");
            al->a.id = NULL;
        }
        cmx_config_path_pop(ctx, mark);
        i++;
    }
    l->n_agreements = i;
    return 0;
}

/* ---- resolution ------------------------------------------------------------------------ */

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Cloud labels collected from every section (malloc'd array of borrowed strings). */
struct names {
    const char **v;
    size_t n, cap;
    bool nomem;
};

static void names_add(struct names *s, const char *name)
{
    if (name == NULL || s->nomem)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        const char **v = realloc(s->v, cap * sizeof(*v));
        if (v == NULL) {
            s->nomem = true;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = name;
}

static int collect_clouds(struct cmx_config_ctx *ctx, struct cmx_agreements *a, struct load *l)
{
    struct cmx_config *cfg = ctx->cfg;
    struct names s = {0};

    for (size_t i = 0; i < cfg->n_providers; i++)
        names_add(&s, cfg->providers[i].cloud);
    names_add(&s, l->maker.name);
    for (size_t i = 0; i < l->n_products; i++) {
        for (size_t j = 0; j < l->products[i].n_launches; j++)
            names_add(&s, l->products[i].launches[j].cloud.name);
    }
    for (size_t i = 0; i < l->n_agreements; i++) {
        const struct agreement_load *al = &l->agreements[i];
        for (size_t k = 0; k < al->n_versions; k++) {
            const struct version_load *vl = &al->versions[k];
            names_add(&s, vl->primary.name);
            for (size_t j = 0; j < vl->n_licences; j++)
                names_add(&s, vl->licences[j].licensee.name);
            for (size_t j = 0; j < vl->n_shares; j++) {
                for (size_t c = 0; c < vl->shares[j].clouds.n; c++)
                    names_add(&s, vl->shares[j].clouds.v[c].name);
            }
        }
    }
    if (s.nomem) {
        free(s.v);
        return nomem(ctx), -1;
    }
    if (s.n > 0)
        qsort(s.v, s.n, sizeof(s.v[0]), cmp_str);
    a->clouds = cmx_arena_calloc(ctx->arena, (s.n ? s.n : 1) * sizeof(*a->clouds));
    if (a->clouds == NULL) {
        free(s.v);
        return nomem(ctx), -1;
    }
    for (size_t i = 0; i < s.n; i++) {
        if (a->n_clouds == 0 || strcmp(a->clouds[a->n_clouds - 1], s.v[i]) != 0)
            a->clouds[a->n_clouds++] = (char *)s.v[i];
    }
    free(s.v);
    return 0;
}

/* The product index of r, reporting an undefined name (with a suggestion). -1 when
 * unknown. */
static int64_t resolve_product(struct cmx_config_ctx *ctx, const struct cmx_agreements *a,
                               const struct ref *r)
{
    const char *names[64];
    size_t n = 0;
    int64_t p = cmx_agreements_product(a, r->name);

    if (p >= 0)
        return p;
    for (size_t i = 0; i < a->n_products && n < 64; i++)
        names[n++] = a->products[i].name;
    const char *hint = cmx_config_suggest(r->name, strlen(r->name), names, n);
    if (hint != NULL && strcmp(r->raw, r->name) == 0)
        cmx_config_error(ctx, r->line,
                         "%s: no product named \"%s\" is defined (did you mean \"%s\"?)", r->path,
                         r->raw, hint);
    else
        cmx_config_error(ctx, r->line, "%s: no product named \"%s\" is defined under products",
                         r->path, r->raw);
    return -1;
}

static int resolve_scope(struct cmx_config_ctx *ctx, const struct cmx_agreements *a,
                         const struct scope_load *sl, struct cmx_agr_scope *out)
{
    out->kind = sl->kind;
    out->products = NULL;
    out->n_products = 0;
    if (sl->kind != CMX_AGR_SCOPE_LIST || sl->names.n == 0)
        return 0;
    out->products = cmx_arena_calloc(ctx->arena, sl->names.n * sizeof(*out->products));
    if (out->products == NULL)
        return nomem(ctx), -1;
    for (size_t i = 0; i < sl->names.n; i++) {
        int64_t p = resolve_product(ctx, a, &sl->names.v[i]);
        if (p >= 0)
            out->products[out->n_products++] = (size_t)p;
    }
    return 0;
}

static size_t cloud_of(const struct cmx_agreements *a, const char *name)
{
    int64_t c = cmx_agreements_cloud(a, name);
    assert(c >= 0); /* every label was collected by collect_clouds() */
    return (size_t)c;
}

static int resolve_version(struct cmx_config_ctx *ctx, struct cmx_agreements *a,
                           struct version_load *vl, struct cmx_agr_version *v)
{
    *v = vl->v;
    if (vl->primary.name != NULL)
        v->primary = (int64_t)cloud_of(a, vl->primary.name);
    v->has_first_launch = vl->fl_given;
    if (vl->fl_given) {
        if (resolve_scope(ctx, a, &vl->fl_scope, &v->first_launch) != 0)
            return -1;
        if (vl->primary_line == 0)
            cmx_config_error(ctx, vl->fl_line,
                             "%s: first_launch needs a primary_cloud in the same version",
                             v->label);
    } else if (vl->primary.name != NULL) {
        cmx_config_warn(ctx, vl->primary_line,
                        "%s: primary_cloud without first_launch has no effect (add first_launch: "
                        "{ products: core })",
                        v->label);
    }

    /* an opt-out naming several products is one opt-out per product */
    size_t n_out = 0;
    for (size_t i = 0; i < vl->n_opt_outs; i++)
        n_out += vl->opt_outs[i].products.n ? vl->opt_outs[i].products.n : 1;
    v->n_opt_outs = 0;
    v->opt_outs = cmx_arena_calloc(ctx->arena, (n_out ? n_out : 1) * sizeof(*v->opt_outs));
    v->licences =
        cmx_arena_calloc(ctx->arena, (vl->n_licences ? vl->n_licences : 1) * sizeof(*v->licences));
    v->shares =
        cmx_arena_calloc(ctx->arena, (vl->n_shares ? vl->n_shares : 1) * sizeof(*v->shares));
    if (v->opt_outs == NULL || v->licences == NULL || v->shares == NULL)
        return nomem(ctx), -1;
    for (size_t i = 0; i < vl->n_opt_outs; i++) {
        struct optout_load *ol = &vl->opt_outs[i];
        struct cmx_agr_optout o = ol->o;
        if (!ol->has_since)
            o.since = v->effective;
        if (ol->products.n == 0) {
            v->opt_outs[v->n_opt_outs++] = o; /* a capability on every product */
            continue;
        }
        for (size_t k = 0; k < ol->products.n; k++) {
            o.product = resolve_product(ctx, a, &ol->products.v[k]);
            if (o.product >= 0)
                v->opt_outs[v->n_opt_outs++] = o;
        }
    }
    for (size_t i = 0; i < vl->n_licences; i++) {
        struct licence_load *ll = &vl->licences[i];
        struct cmx_agr_licence lic = ll->l;
        if (ll->licensee.name == NULL || !ll->scope.given || !ll->until_ok)
            continue; /* reported */
        lic.cloud = cloud_of(a, ll->licensee.name);
        if (resolve_scope(ctx, a, &ll->scope, &lic.scope) != 0)
            return -1;
        if (!ll->has_from)
            lic.from = v->effective;
        if (lic.until < lic.from) {
            char d[40];
            cmx_clock_format_short(lic.from, d, sizeof(d));
            cmx_config_error(ctx, ll->until_line, "%s: licence of %s ends before it starts (%s%s)",
                             v->label, ll->licensee.raw, ll->has_from ? "from " : "effective ", d);
            continue;
        }
        v->licences[v->n_licences++] = lic;
    }
    for (size_t i = 0; i < vl->n_shares; i++) {
        struct share_load *sl = &vl->shares[i];
        struct cmx_agr_revshare s = sl->s;
        bool ok = true;
        if (s.payee == NULL || !sl->until_ok)
            continue;
        if (!s.base_all && sl->clouds.n == 0 && sl->products.n == 0)
            continue; /* base missing or rejected: reported */
        if (s.currency == NULL)
            s.currency = (char *)"USD";
        s.clouds = cmx_arena_calloc(ctx->arena, (sl->clouds.n ? sl->clouds.n : 1) * sizeof(size_t));
        s.products =
            cmx_arena_calloc(ctx->arena, (sl->products.n ? sl->products.n : 1) * sizeof(size_t));
        if (s.clouds == NULL || s.products == NULL)
            return nomem(ctx), -1;
        s.n_clouds = s.n_products = 0;
        for (size_t j = 0; j < sl->clouds.n; j++)
            s.clouds[s.n_clouds++] = cloud_of(a, sl->clouds.v[j].name);
        for (size_t j = 0; j < sl->products.n; j++) {
            int64_t p = resolve_product(ctx, a, &sl->products.v[j]);
            if (p < 0)
                ok = false;
            else
                s.products[s.n_products++] = (size_t)p;
        }
        if (!sl->has_from)
            s.from = v->effective;
        if (s.until < s.from) {
            cmx_config_error(ctx, sl->until_line,
                             "%s: revenue share to \"%s\" ends before it starts", v->label,
                             s.payee);
            ok = false;
        }
        if (ok)
            v->shares[v->n_shares++] = s;
    }
    return 0;
}

static int cmp_version(const void *x, const void *y)
{
    const struct cmx_agr_version *a = x, *b = y;
    if (a->effective != b->effective)
        return a->effective < b->effective ? -1 : 1;
    return a->line < b->line ? -1 : a->line > b->line;
}

static int resolve_agreements(struct cmx_config_ctx *ctx, struct cmx_agreements *a, struct load *l)
{
    a->agreements = cmx_arena_calloc(ctx->arena, (l->n_agreements ? l->n_agreements : 1) *
                                                     sizeof(*a->agreements));
    if (a->agreements == NULL)
        return nomem(ctx), -1;
    for (size_t i = 0; i < l->n_agreements; i++) {
        struct agreement_load *al = &l->agreements[i];
        struct cmx_agr_agreement *ag;
        bool dup = false;

        if (al->a.id == NULL)
            continue; /* reported */
        for (size_t j = 0; j < i && !dup; j++) {
            if (l->agreements[j].a.id != NULL && strcmp(l->agreements[j].a.id, al->a.id) == 0) {
                cmx_config_error(ctx, al->id_line,
                                 "duplicate agreement id \"%s\" (first defined at line %d)",
                                 al->raw ? al->raw : "", l->agreements[j].a.line);
                dup = true;
            }
        }
        if (dup || al->n_versions == 0)
            continue;
        ag = &a->agreements[a->n_agreements];
        *ag = al->a;
        ag->pos = a->n_agreements;
        ag->versions = cmx_arena_calloc(ctx->arena, al->n_versions * sizeof(*ag->versions));
        if (ag->versions == NULL)
            return nomem(ctx), -1;
        ag->n_versions = 0;
        /* Sort first (labels need the dates), then resolve each version's terms. */
        struct version_load **order = calloc(al->n_versions, sizeof(*order));
        if (order == NULL)
            return nomem(ctx), -1;
        size_t n = 0;
        for (size_t k = 0; k < al->n_versions; k++) {
            if (al->versions[k].effective_ok)
                order[n++] = &al->versions[k];
        }
        /* Insertion sort by (effective, line): versions are few. */
        for (size_t k = 1; k < n; k++) {
            struct version_load *x = order[k];
            size_t j = k;
            while (j > 0 && cmp_version(&x->v, &order[j - 1]->v) < 0) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = x;
        }
        for (size_t k = 0; k < n; k++) {
            struct version_load *vl = order[k];
            char d[40];
            if (k > 0 && vl->v.effective == order[k - 1]->v.effective) {
                cmx_clock_format_short(vl->v.effective, d, sizeof(d));
                cmx_config_error(ctx, vl->effective_line,
                                 "agreement \"%s\" has two versions effective %s (the other at "
                                 "line %d); give each amendment its own effective date",
                                 ag->id, d, order[k - 1]->v.line);
                /* Still check its terms, into a version that is then dropped. */
                struct cmx_agr_version scratch;
                vl->v.label = cmx_arena_printf(ctx->arena, "%s@%s", ag->id, d);
                if (vl->v.label == NULL || resolve_version(ctx, a, vl, &scratch) != 0) {
                    free(order);
                    return nomem(ctx), -1;
                }
                continue;
            }
            struct cmx_agr_version *v = &ag->versions[ag->n_versions];
            cmx_clock_format_short(vl->v.effective, d, sizeof(d));
            v->label = cmx_arena_printf(ctx->arena, "%s@%s", ag->id, d);
            if (v->label == NULL) {
                free(order);
                return nomem(ctx), -1;
            }
            char *label = v->label;
            vl->v.label = label;
            if (resolve_version(ctx, a, vl, v) != 0) {
                free(order);
                return -1;
            }
            v->label = label;
            v->agreement = ag;
            ag->n_versions++;
        }
        free(order);
        for (size_t k = 0; k < ag->n_versions; k++)
            ag->versions[k].end =
                k + 1 < ag->n_versions ? ag->versions[k + 1].effective : CMX_AGR_NEVER;
        if (ag->n_versions > 0)
            a->n_agreements++;
    }
    return 0;
}

/* ---- cross-section checks --------------------------------------------------------------- */

/* Launch dates on other clouds that first launch overrides: the launch is on day L, but a
 * first-launch rule (awaiting the primary's launch, or its holdback) keeps the cloud from
 * serving then. The warning says which date will actually apply. */
static void check_launch_order(struct cmx_config_ctx *ctx, const struct cmx_agreements *a,
                               const struct load *l)
{
    for (size_t p = 0; p < a->n_products; p++) {
        const struct product_load *pl = NULL;
        int64_t *bp = NULL;
        size_t nbp = 0;

        for (size_t i = 0; i < l->n_products && pl == NULL; i++) {
            if (l->products[i].p.name == a->products[p].name)
                pl = &l->products[i];
        }
        if (pl == NULL)
            continue;
        for (size_t j = 0; j < pl->n_launches; j++) {
            const struct launch_load *ll = &pl->launches[j];
            size_t c = cloud_of(a, ll->cloud.name);
            unsigned cap = a->products[p].caps & (~a->products[p].caps + 1);
            const struct cmx_agr_version *v =
                cmx_agr_first_launch_denial(a, p, c, cap ? cap : CMX_CAP_CHAT, ll->at);
            if (v == NULL)
                continue;
            if (bp == NULL) {
                nbp = cmx_agr_breakpoints(a, p, &bp);
                if (nbp == (size_t)-1) {
                    nomem(ctx);
                    return;
                }
            }
            int64_t from = CMX_AGR_NEVER;
            for (size_t i = 0; i < nbp && from == CMX_AGR_NEVER; i++) {
                if (bp[i] > ll->at &&
                    cmx_agr_first_launch_denial(a, p, c, cap ? cap : CMX_CAP_CHAT, bp[i]) == NULL)
                    from = bp[i];
            }
            char at[40], ps[40], when[40];
            int64_t lp = a->products[p].launches[v->primary];
            cmx_clock_format_short(ll->at, at, sizeof(at));
            if (lp == CMX_AGR_NEVER)
                snprintf(ps, sizeof(ps), "no launch date");
            else
                cmx_clock_format_short(lp, ps, sizeof(ps));
            char tail[200];
            if (from == CMX_AGR_NEVER) {
                snprintf(tail, sizeof(tail), "%s will not serve it under the current terms",
                         a->clouds[c]);
            } else {
                cmx_clock_format_short(from, when, sizeof(when));
                snprintf(tail, sizeof(tail), "%s will serve it from %s, not %s", a->clouds[c], when,
                         at);
            }
            cmx_config_warn(ctx, ll->cloud.line,
                            "%s: %s launches on %s on %s, before first launch under %s lets it "
                            "(primary cloud %s: %s%s%d day%s holdback); %s",
                            ll->cloud.path, a->products[p].name, a->clouds[c], at, v->label,
                            a->clouds[v->primary], ps, lp == CMX_AGR_NEVER ? ", " : " + ",
                            v->holdback_days, v->holdback_days == 1 ? "" : "s", tail);
        }
        free(bp);
    }
}

/* Does any version of any agreement ever license cloud c for product p? */
static bool ever_licensed(const struct cmx_agreements *a, size_t p, size_t c)
{
    for (size_t i = 0; i < a->n_agreements; i++) {
        for (size_t k = 0; k < a->agreements[i].n_versions; k++) {
            const struct cmx_agr_version *v = &a->agreements[i].versions[k];
            for (size_t j = 0; j < v->n_licences; j++) {
                if (v->licences[j].cloud == c && cmx_agr_scope_covers(a, &v->licences[j].scope, p))
                    return true;
            }
        }
    }
    return false;
}

/* Warns about each product that no agreement names: no licence of any version covers it
 * and no first-launch rule binds it, so only the maker's own cloud may ever serve it. */
static void check_products_covered(struct cmx_config_ctx *ctx, const struct cmx_agreements *a)
{
    if (a->n_agreements == 0)
        return; /* warned as a whole */
    for (size_t p = 0; p < a->n_products; p++) {
        bool covered = false;
        for (size_t i = 0; i < a->n_agreements && !covered; i++) {
            for (size_t k = 0; k < a->agreements[i].n_versions && !covered; k++) {
                const struct cmx_agr_version *v = &a->agreements[i].versions[k];
                covered = v->has_first_launch && cmx_agr_scope_covers(a, &v->first_launch, p);
                for (size_t j = 0; j < v->n_licences && !covered; j++)
                    covered = cmx_agr_scope_covers(a, &v->licences[j].scope, p);
            }
        }
        if (!covered)
            cmx_config_warn(ctx, a->products[p].line,
                            "products[%zu]: %s is in no agreement (no licence covers it): only "
                            "the maker's own cloud%s%s may serve it",
                            p, a->products[p].name, a->maker ? " " : "", a->maker ? a->maker : "");
    }
}

/* Warns about two exclusive licences for different clouds in force at the same time over a
 * common product: each shuts the other out, so only the maker's own cloud may serve it
 * then (almost always a mistake in the terms). One warning per pair, naming the first such
 * product and the overlap. */
static void check_exclusive_overlaps(struct cmx_config_ctx *ctx, const struct cmx_agreements *a)
{
    struct excl {
        const struct cmx_agr_version *v;
        const struct cmx_agr_licence *l;
        int64_t from, to; /* in force, inclusive */
    } *x = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < a->n_agreements; i++) {
        for (size_t k = 0; k < a->agreements[i].n_versions; k++) {
            const struct cmx_agr_version *v = &a->agreements[i].versions[k];
            for (size_t j = 0; j < v->n_licences; j++) {
                const struct cmx_agr_licence *l = &v->licences[j];
                int64_t from = l->from > v->effective ? l->from : v->effective;
                int64_t to =
                    v->end != CMX_AGR_NEVER && v->end - 1 < l->until ? v->end - 1 : l->until;
                if (!l->exclusive || from > to)
                    continue;
                if (n == cap) {
                    cap = cap ? cap * 2 : 8;
                    struct excl *nx = realloc(x, cap * sizeof(*x));
                    if (nx == NULL) {
                        free(x);
                        nomem(ctx);
                        return;
                    }
                    x = nx;
                }
                x[n++] = (struct excl){v, l, from, to};
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            int64_t from = x[i].from > x[j].from ? x[i].from : x[j].from;
            int64_t to = x[i].to < x[j].to ? x[i].to : x[j].to;
            if (x[i].l->cloud == x[j].l->cloud || from > to)
                continue;
            for (size_t p = 0; p < a->n_products; p++) {
                if (!cmx_agr_scope_covers(a, &x[i].l->scope, p) ||
                    !cmx_agr_scope_covers(a, &x[j].l->scope, p))
                    continue;
                char f[40], t[40];
                cmx_clock_format_short(from, f, sizeof(f));
                cmx_clock_format_date(to, t, sizeof(t)); /* "through" a day, as the engine */
                cmx_config_warn(ctx, x[j].l->line,
                                "exclusive licences of %s (%s) and %s (%s) overlap from %s through "
                                "%s over %s: each shuts the other out, so only the maker's own "
                                "cloud may serve it then",
                                a->clouds[x[i].l->cloud], x[i].v->label, a->clouds[x[j].l->cloud],
                                x[j].v->label, f, t, a->products[p].name);
                break;
            }
        }
    }
    free(x);
}

static void resolve_models(struct cmx_config_ctx *ctx, struct cmx_agreements *a, struct load *l)
{
    struct cmx_config *cfg = ctx->cfg;

    a->model_product =
        cmx_arena_alloc(ctx->arena, (cfg->n_models ? cfg->n_models : 1) * sizeof(int64_t));
    a->provider_cloud =
        cmx_arena_alloc(ctx->arena, (cfg->n_providers ? cfg->n_providers : 1) * sizeof(int64_t));
    if (a->model_product == NULL || a->provider_cloud == NULL) {
        nomem(ctx);
        return;
    }
    for (size_t i = 0; i < cfg->n_providers; i++)
        a->provider_cloud[i] = cmx_agreements_cloud(a, cfg->providers[i].cloud);
    for (size_t i = 0; i < cfg->n_models; i++) {
        struct cmx_model_cfg *m = &cfg->models[i];
        a->model_product[i] = m->product == NULL ? cmx_agreements_product(a, m->name) : -1;
        if (a->model_product[i] >= 0)
            m->product = a->products[a->model_product[i]].name;
    }
    for (size_t i = 0; i < l->n_models; i++) {
        const struct model_ref *r = &l->models[i];
        if (r->model >= cfg->n_models)
            continue;
        int64_t p = resolve_product(ctx, a, &r->ref);
        a->model_product[r->model] = p;
        if (p >= 0)
            cfg->models[r->model].product = a->products[p].name;
    }
    /* Deployments that no agreement can ever let serve. */
    for (size_t i = 0; i < cfg->n_models; i++) {
        const struct cmx_model_cfg *m = &cfg->models[i];
        int64_t p = a->model_product[i];
        if (p < 0)
            continue;
        for (size_t d = 0; d < m->n_deployments; d++) {
            const struct cmx_provider_cfg *pr = m->deployments[d].provider;
            if (pr == NULL || pr->cloud == NULL)
                continue;
            size_t c = cloud_of(a, pr->cloud);
            if ((int64_t)c == a->maker_cloud || ever_licensed(a, (size_t)p, c))
                continue;
            cmx_config_warn(ctx, m->deployments[d].line,
                            "model \"%s\" (product %s) has a deployment on cloud %s, which no "
                            "agreement licenses for it: that deployment will never serve",
                            m->name, a->products[p].name, pr->cloud);
        }
    }
}

void cmx_config_agreements_finish(struct cmx_config_ctx *ctx)
{
    struct cmx_agreements *a = ctx->cfg->agreements;
    struct load *l;

    if (a == NULL || a->load == NULL)
        return;
    l = a->load;
    if (ctx->nomem)
        goto out;

    /* Products: unique names, then their launches by cloud once the clouds are known. */
    a->products =
        cmx_arena_calloc(ctx->arena, (l->n_products ? l->n_products : 1) * sizeof(*a->products));
    if (a->products == NULL) {
        nomem(ctx);
        goto out;
    }
    for (size_t i = 0; i < l->n_products; i++) {
        struct product_load *pl = &l->products[i];
        int64_t first = cmx_agreements_product(a, pl->p.name);
        if (pl->p.name == NULL)
            continue;
        if (first >= 0) {
            cmx_config_error(ctx, pl->name_line,
                             "duplicate product name \"%s\" (first defined at line %d)",
                             pl->raw ? pl->raw : "", a->products[first].line);
            pl->p.name = NULL;
            continue;
        }
        a->products[a->n_products++] = pl->p;
    }
    if (collect_clouds(ctx, a, l) != 0)
        goto out;
    if (l->maker.name != NULL) {
        a->maker = (char *)l->maker.name;
        a->maker_cloud = cmx_agreements_cloud(a, l->maker.name);
    }
    for (size_t i = 0, p = 0; i < l->n_products; i++) {
        struct product_load *pl = &l->products[i];
        if (pl->p.name == NULL)
            continue;
        struct cmx_agr_product *pr = &a->products[p++];
        pr->launches =
            cmx_arena_alloc(ctx->arena, (a->n_clouds ? a->n_clouds : 1) * sizeof(int64_t));
        if (pr->launches == NULL) {
            nomem(ctx);
            goto out;
        }
        for (size_t c = 0; c < a->n_clouds; c++)
            pr->launches[c] = CMX_AGR_NEVER;
        for (size_t j = 0; j < pl->n_launches; j++)
            pr->launches[cloud_of(a, pl->launches[j].cloud.name)] = pl->launches[j].at;
    }

    if (resolve_agreements(ctx, a, l) != 0)
        goto out;
    resolve_models(ctx, a, l);
    if (ctx->nomem)
        goto out;
    check_launch_order(ctx, a, l);
    check_products_covered(ctx, a);
    check_exclusive_overlaps(ctx, a);
    if (a->n_products > 0 && a->n_agreements == 0 && l->agreements_given == false)
        cmx_config_warn(ctx, a->products[0].line,
                        "products are defined but no agreements: only the maker's own cloud%s%s "
                        "may serve them",
                        a->maker ? " " : "", a->maker ? a->maker : "");
    if (ctx->errors == 0) {
        int rc = cmx_agreements_precompute(a, ctx->arena);
        if (rc == CMX_ETOOBIG)
            cmx_config_error(ctx, a->n_products ? a->products[0].line : 1,
                             "the agreements are too large to precompute (%zu products x %zu "
                             "clouds, with their terms): split them or remove old versions",
                             a->n_products, a->n_clouds);
        else if (rc != 0)
            nomem(ctx);
    }
out:
    a->load = NULL;
}
