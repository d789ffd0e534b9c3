/* The configuration schema (one key table per YAML mapping), cross-checks between sections
 * and the public API of config.h. The generic machinery is in config_walk.c.
 *
 * To add a top-level section: write its key table (or a handler for lists), add a row to
 * top_keys[] below, and put its result in struct cmx_config. Rows run in table order, so a
 * section that refers to another one (models -> providers) comes after it in the table. */
#include "config/config_int.h"
#include "config/config_agreements.h"
#include "config/config_tenants.h"
#include "config/config_bedrock.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/err.h"
#include "auth/gcp_token.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Providers and models sorted by name, for O(log n) lookups and duplicate detection. */
struct cmx_config_name_index {
    const char *name; /* the entry's name */
    size_t len;       /* strlen(name) */
    size_t pos;       /* index in cfg->providers / cfg->models */
};

/* ---- table helpers ----------------------------------------------------------------- */

/* Prices are capped at 1,000,000 USD per million tokens so that tokens x price stays far
 * from int64 overflow in the ledger. */
#define PRICE_MAX  (INT64_C(1000000) * 1000000)
#define WEIGHT_MAX 1000000

static const char *const strategies[] = {"priority", "weighted", "least_latency", "lowest_price",
                                         NULL};

/* ---- small validators -------------------------------------------------------------- */

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

/* Port: 1-65535, digits only. */
static bool parse_port(const char *s, size_t len, int *port)
{
    long v = 0;
    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *port = (int)v;
    return true;
}

/* Host name or IPv4 literal: letters, digits, '-', '.', '_' (some internal names use it). */
static bool valid_hostname(const char *s, size_t len)
{
    if (len == 0 || len > 253 || s[0] == '-' || s[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return false;
    }
    return true;
}

static bool valid_ipv6(const char *s, size_t len)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    unsigned char addr[16];
    if (len == 0 || len >= sizeof(tmp))
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return inet_pton(AF_INET6, tmp, addr) == 1;
}

/* Splits "host:port" / "[v6]:port". On success *host points into s (brackets stripped). */
static const char *split_host_port(const char *s, size_t len, const char **host, size_t *hlen,
                                   int *port, bool need_port)
{
    const char *colon;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL)
            return "missing ']' after the IPv6 address";
        *host = s + 1;
        *hlen = (size_t)(close - s) - 1;
        if (!valid_ipv6(*host, *hlen))
            return "invalid IPv6 address";
        colon = close + 1;
        if (colon == s + len) {
            if (need_port)
                return "missing :port";
            *port = 0;
            return NULL;
        }
        if (*colon != ':')
            return "unexpected text after ']'";
    } else {
        colon = memchr(s, ':', len);
        if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) != NULL)
            return "IPv6 addresses must be written in brackets, e.g. [::1]:8080";
        if (colon == NULL) {
            if (need_port)
                return "missing :port";
            colon = s + len;
        }
        *host = s;
        *hlen = (size_t)(colon - s);
        if (*hlen == 0)
            return "missing host";
        if (!valid_hostname(*host, *hlen))
            return "invalid host name";
        if (colon == s + len) {
            *port = 0;
            return NULL;
        }
    }
    if (!parse_port(colon + 1, len - (size_t)(colon + 1 - s), port))
        return "port must be a number between 1 and 65535";
    return NULL;
}

/* ---- handlers ---------------------------------------------------------------------- */

static int listen_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                     void *obj)
{
    struct cmx_config *cfg = obj;
    const char *text, *host = NULL, *why;
    size_t len, hlen = 0;
    char msg[160];
    int port = 0;

    if (cmx_config_text(ctx, val, line, &text, &len) != 0)
        return -1;
    why = split_host_port(text, len, &host, &hlen, &port, true);
    if (why != NULL) {
        snprintf(msg, sizeof(msg),
                 "must be host:port (e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080): %s", why);
        cmx_config_bad_value(ctx, val, line, 0, msg);
        return -1;
    }
    cfg->listen_host = cmx_arena_strndup(ctx->arena, host, hlen);
    if (cfg->listen_host == NULL) {
        ctx->nomem = true;
        return -1;
    }
    cfg->listen_port = port;
    return 0;
}

/* A provider while it is being read: the type is remembered as valid or not so that the
 * type-dependent checks run only on a known type. cfg must stay the first member: the
 * provider key table's offsets are into struct cmx_provider_cfg. */
struct provider_load {
    struct cmx_provider_cfg cfg; /* the provider being filled */
    bool type_ok;                /* type was read and is known */
};

static int provider_type_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                            const char *where, void *obj)
{
    static const enum cmx_provider_type types[] = {
        CMX_PROVIDER_OPENAI,  CMX_PROVIDER_AZURE_OPENAI, CMX_PROVIDER_OPENAI_COMPATIBLE,
        CMX_PROVIDER_BEDROCK, CMX_PROVIDER_ANTHROPIC,    CMX_PROVIDER_VERTEX};
    struct provider_load *pl = obj;
    const char *text;
    size_t len;

    if (cmx_config_text(ctx, val, line, &text, &len) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(text, cmx_provider_type_name(types[i])) == 0) {
            pl->cfg.type = types[i];
            pl->type_ok = true;
            return 0;
        }
    }
    cmx_config_bad_value(ctx, val, line, 0,
                         "is not a known provider type (valid: openai, azure_openai, "
                         "openai_compatible, bedrock, anthropic, vertex)");
    return -1;
}

/* base_url: http(s)://host[:port][/path] with trailing slashes removed. No user info
 * (credentials belong in api_key), no query or fragment. */
static int base_url_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                       void *obj)
{
    struct provider_load *pl = obj;
    const char *text, *why = NULL, *host;
    size_t len, hlen, skip;
    int port;
    char msg[200];

    if (cmx_config_text(ctx, val, line, &text, &len) != 0)
        return -1;
    if (len >= 8 && strncasecmp(text, "https://", 8) == 0)
        skip = 8;
    else if (len >= 7 && strncasecmp(text, "http://", 7) == 0)
        skip = 7;
    else {
        why = "must start with http:// or https://";
        goto bad;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c <= 0x20 || c == 0x7f) {
            why = "must not contain spaces or control characters";
            goto bad;
        }
        if (c == '?' || c == '#') {
            why = "must not contain a query (?) or fragment (#)";
            goto bad;
        }
    }
    size_t auth_end = skip;
    while (auth_end < len && text[auth_end] != '/')
        auth_end++;
    if (memchr(text + skip, '@', auth_end - skip) != NULL) {
        why = "must not contain user credentials (put the key in api_key)";
        goto bad;
    }
    why = split_host_port(text + skip, auth_end - skip, &host, &hlen, &port, false);
    if (why != NULL)
        goto bad;
    while (len > auth_end && text[len - 1] == '/')
        len--;
    pl->cfg.base_url = cmx_arena_strndup(ctx->arena, text, len);
    if (pl->cfg.base_url == NULL) {
        ctx->nomem = true;
        return -1;
    }
    return 0;

bad:
    snprintf(msg, sizeof(msg), "is not a valid URL: %s", why);
    cmx_config_bad_value(ctx, val, line, 0, msg);
    return -1;
}

static const struct cmx_config_key tls_keys[] = {
    K_STR("ca_file", struct cmx_provider_cfg, ca_file, 0),
    K_END,
};

static const struct cmx_config_key provider_timeout_keys[] = {
    K_INT("connect_ms", struct cmx_provider_cfg, connect_timeout_ms, 0, INT_MAX),
    K_INT("first_byte_ms", struct cmx_provider_cfg, first_byte_timeout_ms, 0, INT_MAX),
    K_INT("idle_ms", struct cmx_provider_cfg, idle_timeout_ms, 0, INT_MAX),
    K_END,
};

static const struct cmx_config_key provider_keys[] = {
    K_STR("name", struct cmx_provider_cfg, name, REQ),
    K_FN("type", provider_type_fn, REQ),
    K_STR("cloud", struct cmx_provider_cfg, cloud, REQ),
    K_STR("region", struct cmx_provider_cfg, region, 0),
    K_FN("base_url", base_url_fn, 0), /* required per type: see check_provider_type() */
    K_STR("api_key", struct cmx_provider_cfg, api_key, CMX_CONFIG_SECRET),
    K_STR("api_version", struct cmx_provider_cfg, api_version, 0),
    /* ---- issue 7: anthropic and vertex */
    K_INT("max_tokens_default", struct cmx_provider_cfg, max_tokens_default, 1, INT_MAX),
    K_STR("project", struct cmx_provider_cfg, project, 0),
    K_STR("credentials_file", struct cmx_provider_cfg, credentials_file, 0),
    K_STR("access_token", struct cmx_provider_cfg, access_token, CMX_CONFIG_SECRET),
    /* vertex and bedrock: base URL override (tests, private endpoints, VPC endpoints) */
    K_FN("endpoint", base_url_fn, 0),
    K_MAP("tls", tls_keys),
    K_MAP("timeouts", provider_timeout_keys),
    /* type bedrock */
    K_STR("access_key_id", struct cmx_provider_cfg, access_key_id, CMX_CONFIG_SECRET),
    K_STR("secret_access_key", struct cmx_provider_cfg, secret_access_key, CMX_CONFIG_SECRET),
    K_STR("session_token", struct cmx_provider_cfg, session_token, CMX_CONFIG_SECRET),
    K_STR("profile", struct cmx_provider_cfg, profile, 0),
    K_END,
};

/* The name of a list entry as written in the file (before ${VAR} expansion, so that no
 * environment value reaches a message), quoted for messages and copied into the arena.
 * NULL when the entry has no scalar name. */
static const char *raw_name(struct cmx_config_ctx *ctx, struct fy_node *n)
{
    void *it = NULL;
    struct fy_node_pair *p;
    char q[CMX_CONFIG_QUOTE_MAX * 2 + 8];

    if (n != NULL && fy_node_is_alias(n))
        n = fy_node_resolve_alias(n);
    if (n == NULL || fy_node_get_type(n) != FYNT_MAPPING)
        return NULL;
    while ((p = fy_node_mapping_iterate(n, &it)) != NULL) {
        struct fy_node *k = fy_node_pair_key(p), *v = fy_node_pair_value(p);
        size_t klen, len;
        const char *kt = cmx_config_scalar(ctx, k, &klen);
        if (kt == NULL || klen != 4 || memcmp(kt, "name", 4) != 0)
            continue;
        if (v != NULL && fy_node_is_alias(v))
            v = fy_node_resolve_alias(v);
        if (v == NULL || fy_node_get_type(v) != FYNT_SCALAR)
            return NULL;
        const char *t = cmx_config_scalar(ctx, v, &len);
        if (t == NULL || len == 0)
            return NULL;
        cmx_config_quote(q, sizeof(q), t, len);
        char *copy = cmx_arena_strndup(ctx->arena, q, strlen(q));
        if (copy == NULL)
            ctx->nomem = true;
        return copy;
    }
    return NULL;
}

/* "provider \"x\"" when the entry has a name, else "providers[i]". */
static void entry_label(char *dst, size_t cap, const char *raw, const char *kind, const char *list,
                        size_t i)
{
    if (raw != NULL)
        snprintf(dst, cap, "%s \"%s\"", kind, raw);
    else
        snprintf(dst, cap, "%s[%zu]", list, i);
}

/* A list section: null reads as empty; anything else but a sequence is an error. Returns
 * the resolved sequence (NULL when empty/null) and its size, or -1. */
static int get_list(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *what,
                    struct fy_node **seq, size_t *count)
{
    bool bad;

    *seq = NULL;
    *count = 0;
    val = cmx_config_resolve(ctx, val, line, &bad);
    if (bad)
        return -1;
    if (cmx_config_is_null(val))
        return 0;
    if (fy_node_get_type(val) != FYNT_SEQUENCE) {
        cmx_config_error(ctx, line, "%s must be a list of %s (each item starting with \"- \")",
                         ctx->path, what);
        return -1;
    }
    *seq = val;
    *count = (size_t)fy_node_sequence_item_count(val);
    return 0;
}

static int index_cmp(const void *a, const void *b)
{
    const struct cmx_config_name_index *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    if (c != 0)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos; /* equal names: file order */
}

static const struct cmx_config_name_index *index_find(const struct cmx_config_name_index *idx,
                                                      size_t n, const char *name, size_t len)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        size_t m = len < idx[mid].len ? len : idx[mid].len;
        int c = memcmp(name, idx[mid].name, m);
        if (c == 0 && len != idx[mid].len)
            c = len < idx[mid].len ? -1 : 1;
        if (c == 0) {
            /* Several entries share a name only in a failed load: return the first. */
            while (mid > lo && idx[mid - 1].len == len && memcmp(idx[mid - 1].name, name, len) == 0)
                mid--;
            return &idx[mid];
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* A list entry's name and where it was given, for build_index(). */
struct named {
    const char *name; /* NULL when the entry has none (already reported) */
    const char *raw;  /* the name as written, quoted (raw_name()), for messages */
    int name_line;    /* line of its name key */
    int entry_line;   /* line of the entry */
};

/* Sorts the named entries into an arena index and reports every repeated name at the line
 * of its name key, against the entry line of the first one. Returns the number of indexed
 * (named) entries. */
static size_t build_index(struct cmx_config_ctx *ctx, struct cmx_config_name_index **out,
                          const struct named *v, size_t n, const char *what)
{
    struct cmx_config_name_index *idx;
    size_t k = 0;

    *out = NULL;
    if (n == 0)
        return 0;
    idx = cmx_arena_alloc(ctx->arena, n * sizeof(*idx));
    if (idx == NULL) {
        ctx->nomem = true;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].name != NULL)
            idx[k++] = (struct cmx_config_name_index){v[i].name, strlen(v[i].name), i};
    }
    qsort(idx, k, sizeof(*idx), index_cmp);
    for (size_t i = 1, first = 0; i < k; i++) {
        if (idx[i].len == idx[first].len && memcmp(idx[i].name, idx[first].name, idx[i].len) == 0)
            cmx_config_error(
                ctx, v[idx[i].pos].name_line, "duplicate %s name \"%s\" (first defined at line %d)",
                what, v[idx[i].pos].raw ? v[idx[i].pos].raw : "", v[idx[first].pos].entry_line);
        else
            first = i;
    }
    *out = idx;
    return k;
}

/* ---- issue 7: per-type keys of anthropic and vertex ---------------------------------- */

/* Whether key k of the provider table was present. */
static bool seen_key(const struct cmx_config_seen *seen, const char *k)
{
    return seen->lines[cmx_config_key_index(provider_keys, k)] != 0;
}

/* Type-dependent rules: base_url is required for the OpenAI-format types only (anthropic
 * defaults to https://api.anthropic.com, vertex derives its host from region or takes
 * endpoint); vertex needs project, region and one credential; the new keys belong to
 * their type. */
static void check_provider_type(struct cmx_config_ctx *ctx, struct cmx_provider_cfg *p, int iline,
                                const char *label, const struct cmx_config_seen *seen)
{
    bool anth = p->type == CMX_PROVIDER_ANTHROPIC, vx = p->type == CMX_PROVIDER_VERTEX;
    if (!anth && !vx && !seen_key(seen, "base_url"))
        cmx_config_error(ctx, iline, "missing required key \"base_url\" in %s", label);
    if (!anth && seen_key(seen, "max_tokens_default"))
        cmx_config_error(ctx, iline, "%s.max_tokens_default is only valid for type anthropic",
                         label);
    static const char *const vx_only[] = {"project", "credentials_file", "access_token"};
    for (size_t i = 0; !vx && i < sizeof(vx_only) / sizeof(vx_only[0]); i++)
        if (seen_key(seen, vx_only[i]))
            cmx_config_error(ctx, iline, "%s.%s is only valid for type vertex", label, vx_only[i]);
    if (!vx && seen_key(seen, "endpoint"))
        cmx_config_error(ctx, iline, "%s.endpoint is only valid for types vertex and bedrock",
                         label);
    /* (type bedrock is checked by cmx_config_bedrock_provider, never here) */
    static const char *const aws_only[] = {"access_key_id", "secret_access_key", "session_token",
                                           "profile"};
    for (size_t i = 0; i < sizeof(aws_only) / sizeof(aws_only[0]); i++)
        if (seen_key(seen, aws_only[i]))
            cmx_config_error(ctx, iline, "%s.%s is only valid for type bedrock", label,
                             aws_only[i]);
    if (anth) {
        if (p->base_url == NULL)
            p->base_url = cmx_arena_strndup(ctx->arena, "https://api.anthropic.com", 25);
        if (p->max_tokens_default == 0)
            p->max_tokens_default = 4096;
    }
    if (!vx)
        return;
    if (seen_key(seen, "base_url") && seen_key(seen, "endpoint"))
        cmx_config_error(ctx, iline, "%s: give endpoint or base_url, not both", label);
    if (p->project == NULL || p->project[0] == '\0')
        cmx_config_error(ctx, iline, "missing required key \"project\" in %s (type vertex)", label);
    if (p->region == NULL || p->region[0] == '\0') {
        cmx_config_error(ctx, iline,
                         "missing required key \"region\" in %s (type vertex; e.g. us-central1 "
                         "or global)",
                         label);
    } else {
        for (const char *c = p->region; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) {
                cmx_config_error(ctx, iline, "%s.region must be lower-case letters, digits, '-'",
                                 label);
                break;
            }
        if (p->base_url == NULL) {
            p->base_url = strcmp(p->region, "global") == 0
                              ? cmx_arena_printf(ctx->arena, "https://aiplatform.googleapis.com")
                              : cmx_arena_printf(ctx->arena, "https://%s-aiplatform.googleapis.com",
                                                 p->region);
        }
    }
    if (p->api_key != NULL)
        cmx_config_error(ctx, iline,
                         "%s.api_key is not used by type vertex (use credentials_file or "
                         "access_token)",
                         label);
    if (p->access_token != NULL && p->credentials_file != NULL)
        cmx_config_error(ctx, iline, "%s: give credentials_file or access_token, not both", label);
    if (p->access_token == NULL && p->credentials_file == NULL) {
        const char *env = getenv("GOOGLE_APPLICATION_CREDENTIALS");
        if (env != NULL && env[0] != '\0')
            p->credentials_file = cmx_arena_strndup(ctx->arena, env, strlen(env));
        else
            cmx_config_error(ctx, iline,
                             "%s needs credentials: credentials_file, access_token or "
                             "GOOGLE_APPLICATION_CREDENTIALS in the environment",
                             label);
    }
    if (p->credentials_file != NULL) {
        const char *why = NULL;
        if (cmx_gcp_credentials_check(p->credentials_file, &why) != 0)
            cmx_config_error(ctx, iline, "%s.credentials_file: %s", label, why);
    }
}

static int providers_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                        const char *where, void *obj)
{
    struct cmx_config *cfg = obj;
    struct fy_node *seq, *item;
    struct named *names;
    size_t count, i = 0;
    void *it = NULL;
    const size_t k_name = cmx_config_key_index(provider_keys, "name");
    const size_t k_key = cmx_config_key_index(provider_keys, "api_key");
    const size_t k_ver = cmx_config_key_index(provider_keys, "api_version");
    const size_t k_url = cmx_config_key_index(provider_keys, "base_url");
    const size_t k_ep = cmx_config_key_index(provider_keys, "endpoint");
    struct cmx_config_seen seen;

    if (get_list(ctx, val, line, "providers", &seq, &count) != 0 || count == 0)
        return 0;
    cfg->providers = cmx_arena_calloc(ctx->arena, count * sizeof(*cfg->providers));
    ctx->provider_raw = cmx_arena_calloc(ctx->arena, count * sizeof(*ctx->provider_raw));
    names = calloc(count, sizeof(*names));
    if (cfg->providers == NULL || ctx->provider_raw == NULL || names == NULL)
        goto out_nomem;
    while (i < count && (item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        int iline = cmx_config_node_line(item, line);
        struct provider_load pl = {.cfg = {.line = iline}};
        struct cmx_provider_cfg *p = &pl.cfg;
        char label[CMX_CONFIG_PATH_MAX];

        if (!cmx_config_visit(ctx, iline))
            break;
        size_t mark = cmx_config_path_index(ctx, i);
        const char *raw = raw_name(ctx, item);
        entry_label(label, sizeof(label), raw, "provider", "providers", i);
        cmx_config_walk(ctx, item, iline, label, provider_keys, &pl, &seen);

        if (p->name != NULL && !valid_name(p->name))
            cmx_config_error(ctx, seen.lines[k_name],
                             "provider name \"%s\" is invalid: use only letters, digits, '_', "
                             "'.' and '-'",
                             raw ? raw : "");
        bool bedrock = pl.type_ok && p->type == CMX_PROVIDER_BEDROCK;
        if (bedrock)
            cmx_config_bedrock_provider(ctx, p, label, iline, seen.lines[k_url] != 0,
                                        seen.lines[k_ep] != 0);
        else if (pl.type_ok)
            check_provider_type(ctx, p, iline, label, &seen);
        else if (!seen_key(&seen, "base_url"))
            cmx_config_error(ctx, iline, "missing required key \"base_url\" in %s", label);
        if (pl.type_ok && p->type != CMX_PROVIDER_OPENAI_COMPATIBLE && !bedrock &&
            p->type != CMX_PROVIDER_VERTEX && p->api_key == NULL &&
            !(seen.failed & ((uint64_t)1 << k_key))) {
            if (seen.lines[k_key] == 0)
                cmx_config_error(ctx, iline,
                                 "missing required key \"api_key\" in %s (required for type %s)",
                                 label, cmx_provider_type_name(p->type));
            else
                cmx_config_error(ctx, seen.lines[k_key],
                                 "%s.api_key must not be empty (required for type %s)", ctx->path,
                                 cmx_provider_type_name(p->type));
        }
        /* An empty value (api_version: ${VER:-}) counts as absent. */
        if (pl.type_ok && p->type != CMX_PROVIDER_AZURE_OPENAI && p->api_version != NULL)
            cmx_config_error(ctx, seen.lines[k_ver],
                             "%s.api_version is only valid for type azure_openai (%s is %s)",
                             ctx->path, label, cmx_provider_type_name(p->type));
        names[i] = (struct named){p->name, raw, seen.lines[k_name], iline};
        ctx->provider_raw[i] = raw;
        cfg->providers[i++] = *p;
        cmx_config_path_pop(ctx, mark);
    }
    cfg->n_providers = i;
    ctx->n_provider_idx = build_index(ctx, &cfg->provider_idx, names, i, "provider");
    free(names);
    return 0;

out_nomem:
    free(names);
    ctx->nomem = true;
    return -1;
}

static int deployment_provider_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                                  const char *where, void *obj)
{
    struct cmx_deployment_cfg *d = obj;
    struct cmx_config *cfg = ctx->cfg;
    const char *text;
    size_t len;

    if (cmx_config_text(ctx, val, line, &text, &len) != 0)
        return -1;
    const struct cmx_config_name_index *hit =
        index_find(cfg->provider_idx, ctx->n_provider_idx, text, len);
    if (hit != NULL) {
        d->provider = &cfg->providers[hit->pos];
        return 0;
    }

    /* Quote the name as written: an expanded value is never echoed. */
    char q[CMX_CONFIG_QUOTE_MAX * 2 + 8];
    size_t raw_len = 0;
    struct fy_node *r = fy_node_is_alias(val) ? fy_node_resolve_alias(val) : val;
    const char *raw = cmx_config_scalar(ctx, r, &raw_len);
    cmx_config_quote(q, sizeof(q), raw ? raw : "", raw ? raw_len : 0);

    /* Suggest the closest provider among the first 64 whose names are written plainly,
     * and only for a plainly written reference, so that no expansion leaks. */
    const char *names[64];
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_providers && n < 64; i++) {
        const char *pr = ctx->provider_raw[i];
        if (pr != NULL && cfg->providers[i].name != NULL && strcmp(pr, cfg->providers[i].name) == 0)
            names[n++] = pr;
    }
    const char *hint = NULL;
    if (raw != NULL && memchr(raw, '$', raw_len) == NULL)
        hint = cmx_config_suggest(text, len, names, n);
    if (hint != NULL)
        cmx_config_error(ctx, line, "%s: no provider named \"%s\" (did you mean \"%s\"?)",
                         ctx->path, q, hint);
    else
        cmx_config_error(ctx, line, "%s: no provider named \"%s\" is defined", ctx->path, q);
    return -1;
}

static const struct cmx_config_key price_keys[] = {
    K_MICROS("input_per_mtok", struct cmx_deployment_cfg, price.input_per_mtok, 0, PRICE_MAX, REQ),
    K_MICROS("output_per_mtok", struct cmx_deployment_cfg, price.output_per_mtok, 0, PRICE_MAX,
             REQ),
    K_MICROS("cached_input_per_mtok", struct cmx_deployment_cfg, price.cached_input_per_mtok, 0,
             PRICE_MAX, 0),
    K_END,
};

static int price_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                    void *obj)
{
    struct cmx_deployment_cfg *d = obj;
    char sub[CMX_CONFIG_PATH_MAX + 64];

    snprintf(sub, sizeof(sub), "\"price\" of %s", where);
    d->has_price = true;
    cmx_config_walk(ctx, val, line, sub, price_keys, d, NULL);
    return 0;
}

/* cost: the upstream's price to us, same keys as price (the ledger's cost column). */
static const struct cmx_config_key cost_keys[] = {
    K_MICROS("input_per_mtok", struct cmx_deployment_cfg, cost.input_per_mtok, 0, PRICE_MAX, REQ),
    K_MICROS("output_per_mtok", struct cmx_deployment_cfg, cost.output_per_mtok, 0, PRICE_MAX, REQ),
    K_MICROS("cached_input_per_mtok", struct cmx_deployment_cfg, cost.cached_input_per_mtok, 0,
             PRICE_MAX, 0),
    K_END,
};

static int cost_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                   void *obj)
{
    struct cmx_deployment_cfg *d = obj;
    char sub[CMX_CONFIG_PATH_MAX + 64];

    snprintf(sub, sizeof(sub), "\"cost\" of %s", where);
    d->has_cost = true;
    cmx_config_walk(ctx, val, line, sub, cost_keys, d, NULL);
    return 0;
}

static const struct cmx_config_key deployment_timeout_keys[] = {
    K_INT("connect_ms", struct cmx_deployment_cfg, connect_timeout_ms, 0, INT_MAX),
    K_INT("first_byte_ms", struct cmx_deployment_cfg, first_byte_timeout_ms, 0, INT_MAX),
    K_INT("idle_ms", struct cmx_deployment_cfg, idle_timeout_ms, 0, INT_MAX),
    K_END,
};

static const struct cmx_config_key deployment_keys[] = {
    K_FN("provider", deployment_provider_fn, REQ),
    K_STR("model", struct cmx_deployment_cfg, model, REQ),
    K_INT("priority", struct cmx_deployment_cfg, priority, 0, INT_MAX),
    K_INT("weight", struct cmx_deployment_cfg, weight, 0, WEIGHT_MAX),
    K_FN("price", price_fn, 0),
    K_FN("cost", cost_fn, 0),
    K_MAP("timeouts", deployment_timeout_keys),
    K_END,
};

static int deployments_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line,
                          const char *where, void *obj)
{
    struct cmx_model_cfg *m = obj;
    struct fy_node *seq, *item;
    size_t count, i = 0;
    void *it = NULL;

    if (get_list(ctx, val, line, "deployments", &seq, &count) != 0)
        return -1;
    if (count == 0) {
        cmx_config_error(ctx, line, "%s must list at least one deployment", ctx->path);
        return -1;
    }
    m->deployments = cmx_arena_calloc(ctx->arena, count * sizeof(*m->deployments));
    if (m->deployments == NULL) {
        ctx->nomem = true;
        return -1;
    }
    while (i < count && (item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        int iline = cmx_config_node_line(item, line);
        struct cmx_deployment_cfg *d = &m->deployments[i];
        char label[CMX_CONFIG_PATH_MAX + 64];

        if (!cmx_config_visit(ctx, iline))
            break;
        d->priority = 1;
        d->weight = 1;
        d->price.cached_input_per_mtok = -1;
        d->cost.cached_input_per_mtok = -1;
        d->line = iline;
        size_t mark = cmx_config_path_index(ctx, i);
        snprintf(label, sizeof(label), "deployments[%zu] of %s", i, where);
        cmx_config_walk(ctx, item, iline, label, deployment_keys, d, NULL);
        cmx_config_path_pop(ctx, mark);
        i++;
    }
    m->n_deployments = i;
    return 0;
}

static const struct cmx_config_key model_routing_keys[] = {
    K_ENUM("strategy", struct cmx_model_cfg, strategy, strategies),
    K_END,
};

static const struct cmx_config_key model_keys[] = {
    K_STR("name", struct cmx_model_cfg, name, REQ),
    K_MAP("routing", model_routing_keys),
    K_FN("product", cmx_config_model_product_fn, 0),
    K_FN("deployments", deployments_fn, REQ),
    K_END,
};

static int models_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                     void *obj)
{
    struct cmx_config *cfg = obj;
    struct fy_node *seq, *item;
    struct named *names;
    size_t count, i = 0;
    void *it = NULL;
    const size_t k_name = cmx_config_key_index(model_keys, "name");
    struct cmx_config_seen seen;

    if (get_list(ctx, val, line, "models", &seq, &count) != 0 || count == 0)
        return 0;
    cfg->models = cmx_arena_calloc(ctx->arena, count * sizeof(*cfg->models));
    names = calloc(count, sizeof(*names));
    if (cfg->models == NULL || names == NULL)
        goto out_nomem;
    while (i < count && (item = fy_node_sequence_iterate(seq, &it)) != NULL) {
        int iline = cmx_config_node_line(item, line);
        struct cmx_model_cfg *m = &cfg->models[i];
        char label[CMX_CONFIG_PATH_MAX];

        if (!cmx_config_visit(ctx, iline))
            break;
        m->line = iline;
        size_t mark = cmx_config_path_index(ctx, i);
        const char *raw = raw_name(ctx, item);
        entry_label(label, sizeof(label), raw, "model", "models", i);
        cmx_config_walk(ctx, item, iline, label, model_keys, m, &seen);
        names[i] = (struct named){m->name, raw, seen.lines[k_name], iline};
        cmx_config_path_pop(ctx, mark);
        i++;
    }
    cfg->n_models = i;
    build_index(ctx, &cfg->model_idx, names, i, "model");
    free(names);
    return 0;

out_nomem:
    free(names);
    ctx->nomem = true;
    return -1;
}

static const struct cmx_config_key server_keys[] = {
    K_SIZE("max_body_bytes", struct cmx_config, server.max_body_bytes, 1, INT64_MAX),
    K_SIZE("max_header_bytes", struct cmx_config, server.max_header_bytes, 1, INT64_MAX),
    K_INT("header_timeout_ms", struct cmx_config, server.header_timeout_ms, 1, INT_MAX),
    K_INT("body_timeout_ms", struct cmx_config, server.body_timeout_ms, 1, INT_MAX),
    K_INT("keepalive_timeout_ms", struct cmx_config, server.keepalive_timeout_ms, 0, INT_MAX),
    K_INT("drain_timeout_s", struct cmx_config, server.drain_timeout_s, 0, INT_MAX),
    K_BOOL("access_log", struct cmx_config, server.access_log),
    K_BOOL("protect_probes", struct cmx_config, server.protect_probes),
    K_END,
};

static const struct cmx_config_key circuit_keys[] = {
    K_INT("failures", struct cmx_config, routing.circuit_failures, 1, 1000000),
    K_SECS_MS("cooldown_s", struct cmx_config, routing.circuit_cooldown_ms, 1, 86400000),
    K_SECS_MS("max_wait_s", struct cmx_config, routing.circuit_max_wait_ms, 0, 86400000),
    K_END,
};

static const struct cmx_config_key routing_keys[] = {
    K_ENUM("strategy", struct cmx_config, routing.strategy, strategies),
    K_INT("max_attempts", struct cmx_config, routing.max_attempts, 1, 100),
    K_INT("timeout_s", struct cmx_config, routing.timeout_s, 1, INT_MAX),
    K_INT("connect_timeout_ms", struct cmx_config, routing.connect_timeout_ms, 1, INT_MAX),
    K_INT("first_byte_timeout_ms", struct cmx_config, routing.first_byte_timeout_ms, 1, INT_MAX),
    K_INT("idle_timeout_ms", struct cmx_config, routing.idle_timeout_ms, 1, INT_MAX),
    K_MAP("circuit", circuit_keys),
    K_END,
};

/* ledger: "sqlite://PATH" | "postgres://..." | "off", or {url, durability, spool}. */
static const char *const durabilities[] = {"batched", "per_request", NULL};

static const struct cmx_config_key ledger_keys[] = {
    K_STR("url", struct cmx_config, ledger_url, REQ),
    K_ENUM("durability", struct cmx_config, ledger_durability, durabilities),
    K_STR("spool", struct cmx_config, ledger_spool, 0),
    K_END,
};

static int ledger_fn(struct cmx_config_ctx *ctx, struct fy_node *val, int line, const char *where,
                     void *obj)
{
    struct cmx_config *cfg = obj;
    const char *url;
    size_t len;

    if (fy_node_get_type(val) == FYNT_MAPPING)
        cmx_config_walk(ctx, val, line, "\"ledger\"", ledger_keys, cfg, NULL);
    else if (cmx_config_text(ctx, val, line, &url, &len) == 0)
        cfg->ledger_url = (char *)url;
    url = cfg->ledger_url;
    if (url != NULL && strcmp(url, "off") != 0 && strncmp(url, "sqlite://", 9) != 0 &&
        strncmp(url, "postgres://", 11) != 0 && strncmp(url, "postgresql://", 13) != 0) {
        cmx_config_error(ctx, line,
                         "ledger: the url must start with sqlite://, postgres:// or "
                         "postgresql://, or be off");
        return -1;
    }
    if (url != NULL && strcmp(url, "sqlite://") == 0) {
        cmx_config_error(ctx, line, "ledger: sqlite:// needs a file path");
        return -1;
    }
    return 0;
}

/* Rows run in this order (not file order): providers before models. */
static const char *const auth_modes[] = {"none", "keys", NULL};

static const struct cmx_config_key top_keys[] = {
    K_FN("listen", listen_fn, 0),
    K_INT("workers", struct cmx_config, workers, 0, 1024),
    K_MAP("server", server_keys),
    K_FN("providers", providers_fn, 0),
    K_MAP("routing", routing_keys),
    K_FN("models", models_fn, 0),
    K_FN("maker", cmx_config_maker_fn, 0), /* agreements: after models, products first */
    K_FN("products", cmx_config_products_fn, 0),
    K_FN("agreements", cmx_config_agreements_fn, 0),
    K_STR("admin_key", struct cmx_config, admin_key, CMX_CONFIG_SECRET),
    K_FN("tenants", cmx_config_tenants_fn, 0), /* after providers and models */
    K_ENUM("auth", struct cmx_config, auth, auth_modes),
    K_FN("limits", cmx_config_limits_fn, CMX_CONFIG_SECRET),
    K_FN("ledger", ledger_fn, 0),
    K_END,
};

/* ---- cross-section checks ---------------------------------------------------------- */

static void check_usage(struct cmx_config_ctx *ctx, int models_line)
{
    struct cmx_config *cfg = ctx->cfg;
    bool *used = calloc(cfg->n_providers ? cfg->n_providers : 1, sizeof(*used));

    if (used == NULL) {
        ctx->nomem = true;
        return;
    }
    for (size_t m = 0; m < cfg->n_models; m++) {
        for (size_t d = 0; d < cfg->models[m].n_deployments; d++) {
            const struct cmx_provider_cfg *p = cfg->models[m].deployments[d].provider;
            if (p != NULL)
                used[p - cfg->providers] = true;
        }
    }
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct cmx_provider_cfg *p = &cfg->providers[i];
        if (p->name == NULL || used[i])
            continue;
        const struct cmx_config_name_index *first =
            index_find(cfg->provider_idx, ctx->n_provider_idx, p->name, strlen(p->name));
        if (first == NULL || first->pos != i)
            continue; /* a duplicate, already reported */
        cmx_config_warn(ctx, p->line, "provider \"%s\" is not used by any model deployment",
                        ctx->provider_raw[i] ? ctx->provider_raw[i] : "");
    }
    free(used);
    if (cfg->n_models == 0 && ctx->errors == 0)
        cmx_config_warn(ctx, models_line, "no models are defined; every request will be refused");
}

/* ---- snapshot ---------------------------------------------------------------------- */

static void set_defaults(struct cmx_config *cfg)
{
    cfg->listen_host = (char *)"127.0.0.1";
    cfg->listen_port = 8080;
    cfg->workers = 0;
    cfg->server.max_body_bytes = 10u << 20;
    cfg->server.max_header_bytes = 64u << 10;
    cfg->server.header_timeout_ms = 30000;
    cfg->server.body_timeout_ms = 60000;
    cfg->server.keepalive_timeout_ms = 75000;
    cfg->server.drain_timeout_s = 30;
    cfg->server.access_log = true;
    cfg->routing.strategy = (char *)strategies[0];
    cmx_limits_config_init(&cfg->limits);
    cfg->routing.max_attempts = 3;
    cfg->routing.timeout_s = 600;
    cfg->routing.connect_timeout_ms = 10000;
    cfg->routing.first_byte_timeout_ms = 600000;
    cfg->routing.idle_timeout_ms = 120000;
    cfg->routing.circuit_failures = 5;
    cfg->routing.circuit_cooldown_ms = 30000;
    cfg->routing.circuit_max_wait_ms = 10000;
}

static struct cmx_config *config_new(const char *name)
{
    struct cmx_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return NULL;
    cfg->arena = malloc(sizeof(*cfg->arena));
    if (cfg->arena == NULL)
        goto out_free_cfg;
    cmx_arena_init(cfg->arena);
    cfg->path = cmx_arena_strndup(cfg->arena, name, strlen(name));
    if (cfg->path == NULL)
        goto out_free_arena;
    atomic_init(&cfg->refcount, 1);
    set_defaults(cfg);
    return cfg;

out_free_arena:
    cmx_arena_reset(cfg->arena);
    free(cfg->arena);
out_free_cfg:
    free(cfg);
    return NULL;
}

static void config_free(struct cmx_config *cfg)
{
    if (cfg->arena != NULL) {
        cmx_arena_reset(cfg->arena);
        free(cfg->arena);
    }
    free(cfg);
}

/* ---- public API -------------------------------------------------------------------- */

void cmx_config_diag_init(struct cmx_config_diag *d)
{
    cmx_buf_init(&d->text, CMX_CONFIG_MAX_DIAG);
    d->errors = 0;
    d->warnings = 0;
}

void cmx_config_diag_free(struct cmx_config_diag *d)
{
    cmx_buf_free(&d->text);
    d->errors = 0;
    d->warnings = 0;
}

int cmx_config_load_string(const char *yaml, size_t len, const char *name, struct cmx_config **out,
                           struct cmx_config_diag *diag)
{
    struct cmx_config_ctx ctx;
    struct cmx_config *cfg;
    struct fy_parser *parser = NULL;
    struct fy_diag *fydiag = NULL;
    struct fy_document *doc;
    int rc;

    *out = NULL;
    if (name == NULL)
        name = "<string>";
    memset(&ctx, 0, sizeof(ctx));
    ctx.name = name;
    cfg = config_new(name);
    if (cfg == NULL) {
        if (diag != NULL) {
            cmx_buf_printf(&diag->text, "%s: error: out of memory\n", name);
            diag->errors++;
        }
        return CMX_ENOMEM;
    }
    ctx.cfg = cfg;
    ctx.arena = cfg->arena;

    doc = cmx_config_yaml_parse(&ctx, yaml ? yaml : "", yaml ? len : 0, &parser, &fydiag);
    if (doc != NULL) {
        struct fy_node *root = fy_document_root(doc);
        struct cmx_config_seen seen;
        if (cmx_config_is_null(root)) {
            cmx_config_error(&ctx, 1, "the configuration is empty");
        } else {
            cmx_config_walk(&ctx, root, cmx_config_node_line(root, 1), NULL, top_keys, cfg, &seen);
            int models_line = seen.lines[cmx_config_key_index(top_keys, "models")];
            check_usage(&ctx, models_line > 0 ? models_line : 1);
            cmx_config_agreements_finish(&ctx);
            cmx_config_tenants_finish(&ctx);
        }
    }
    cmx_config_yaml_free(parser, fydiag, doc);

    if (ctx.nomem)
        cmx_config_error(&ctx, 0, "out of memory");
    rc = ctx.nomem ? CMX_ENOMEM : ctx.errors ? CMX_ECONFIG : 0;
    cmx_config_flush(&ctx, diag);
    if (rc != 0) {
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int cmx_config_load(const char *path, struct cmx_config **out, struct cmx_config_diag *diag)
{
    struct cmx_buf b;
    char chunk[65536];
    FILE *f;
    int rc;

    *out = NULL;
    cmx_buf_init(&b, CMX_CONFIG_MAX_FILE);
    f = fopen(path, "rb");
    if (f == NULL)
        goto out_io;
    for (;;) {
        size_t n = fread(chunk, 1, sizeof(chunk), f);
        if (n > 0 && (rc = cmx_buf_append(&b, chunk, n)) != 0) {
            fclose(f);
            if (diag != NULL) {
                if (rc == CMX_ETOOBIG)
                    cmx_buf_printf(&diag->text, "%s: error: file larger than %u bytes\n", path,
                                   CMX_CONFIG_MAX_FILE);
                else
                    cmx_buf_printf(&diag->text, "%s: error: out of memory\n", path);
                diag->errors++;
            }
            cmx_buf_free(&b);
            return rc == CMX_ETOOBIG ? CMX_ECONFIG : CMX_ENOMEM;
        }
        if (n < sizeof(chunk)) {
            if (ferror(f)) {
                fclose(f);
                goto out_io;
            }
            break;
        }
    }
    fclose(f);
    rc = cmx_config_load_string(b.data ? b.data : "", b.len, path, out, diag);
    cmx_buf_free(&b);
    return rc;

out_io:
    if (diag != NULL) {
        cmx_buf_printf(&diag->text, "%s: error: cannot read: %s\n", path, strerror(errno));
        diag->errors++;
    }
    cmx_buf_free(&b);
    return CMX_EIO;
}

struct cmx_config *cmx_config_ref(struct cmx_config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refcount, 1, memory_order_relaxed);
    return cfg;
}

void cmx_config_unref(struct cmx_config *cfg)
{
    if (cfg == NULL)
        return;
    if (atomic_fetch_sub_explicit(&cfg->refcount, 1, memory_order_acq_rel) == 1)
        config_free(cfg);
}

const struct cmx_model_cfg *cmx_config_find_model(const struct cmx_config *cfg, const char *name,
                                                  size_t len)
{
    const struct cmx_config_name_index *hit;

    if (name == NULL)
        return NULL;
    hit = index_find(cfg->model_idx, cfg->model_idx ? cfg->n_models : 0, name, len);
    return hit ? &cfg->models[hit->pos] : NULL;
}

const struct cmx_tenant_cfg *cmx_config_find_tenant(const struct cmx_config *cfg, const char *name)
{
    for (size_t i = 0; name != NULL && i < cfg->n_tenants; i++)
        if (cfg->tenants[i].name != NULL && strcmp(cfg->tenants[i].name, name) == 0)
            return &cfg->tenants[i];
    return NULL;
}

const struct cmx_provider_cfg *cmx_config_find_provider(const struct cmx_config *cfg,
                                                        const char *name)
{
    const struct cmx_config_name_index *hit;

    if (name == NULL)
        return NULL;
    hit =
        index_find(cfg->provider_idx, cfg->provider_idx ? cfg->n_providers : 0, name, strlen(name));
    return hit ? &cfg->providers[hit->pos] : NULL;
}

const char *cmx_provider_type_name(enum cmx_provider_type t)
{
    switch (t) {
    case CMX_PROVIDER_OPENAI:
        return "openai";
    case CMX_PROVIDER_AZURE_OPENAI:
        return "azure_openai";
    case CMX_PROVIDER_OPENAI_COMPATIBLE:
        return "openai_compatible";
    case CMX_PROVIDER_BEDROCK:
        return "bedrock";
    case CMX_PROVIDER_ANTHROPIC:
        return "anthropic";
    case CMX_PROVIDER_VERTEX:
        return "vertex";
    }
    return "unknown";
}
