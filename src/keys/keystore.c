/* Keys and tenants in the ledger database (see keystore.h). */
#include "keys/keystore.h"
#include "core/arena.h"
#include "core/clock.h"
#include "core/decimal.h"
#include "core/err.h"
#include "core/log.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_int(const char *s, int *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < 0 || v > INT_MAX)
        return CMX_EINVAL;
    *out = (int)v;
    return 0;
}

int cmx_keystore_parse_params(const char *expires, const char *rpm, const char *tpm,
                              const char *budget, int64_t now_ms, struct cmx_key_params *p,
                              char *err, size_t cap)
{
    p->expires_ms = -1;
    p->rpm = p->tpm = 0;
    p->budget_micros = -1;
    if (expires != NULL) {
        bool is_date;
        if (cmx_clock_parse_iso(expires, strlen(expires), &p->expires_ms, &is_date) != 0) {
            snprintf(err, cap,
                     "expires must be an ISO 8601 date or time in UTC (2027-01-31 or "
                     "2027-01-31T12:00:00Z)");
            return CMX_EINVAL;
        }
        if (p->expires_ms <= now_ms) {
            snprintf(err, cap, "expires must be in the future");
            return CMX_EINVAL;
        }
    }
    if (rpm != NULL && parse_int(rpm, &p->rpm) != 0) {
        snprintf(err, cap, "rpm must be a whole number from 0 to %d", INT_MAX);
        return CMX_EINVAL;
    }
    if (tpm != NULL && parse_int(tpm, &p->tpm) != 0) {
        snprintf(err, cap, "tpm must be a whole number from 0 to %d", INT_MAX);
        return CMX_EINVAL;
    }
    if (budget != NULL && (cmx_decimal_parse(budget, strlen(budget), 6, &p->budget_micros) != 0 ||
                           p->budget_micros <= 0)) {
        snprintf(err, cap,
                 "budget must be a positive decimal amount such as 100.00 (at most 6 "
                 "decimals)");
        p->budget_micros = -1;
        return CMX_EINVAL;
    }
    return 0;
}

/* True when name is a live tenant of the store (*ok false when the store failed). */
static bool store_has_tenant(struct cmx_ledger_store *s, const char *name, bool *ok)
{
    struct cmx_ledger_rows rows;
    *ok = s->ops->tenants_load(s, &rows) == 0;
    bool found = false;
    for (size_t i = 0; *ok && i < rows.n && !found; i++)
        found = strcmp(((struct cmx_ledger_tenant_row *)rows.rows)[i].name, name) == 0;
    if (*ok)
        cmx_ledger_tenant_rows_free(&rows);
    return found;
}

int cmx_keystore_create(struct cmx_ledger_store *s, const struct cmx_config *cfg,
                        const struct cmx_key_params *p, int64_t now_ms,
                        char key_text[CMX_KEY_TEXT_MAX + 1], struct cmx_key_rec *rec, char *err,
                        size_t cap)
{
    const char *name = p->name ? p->name : "";
    memset(rec, 0, sizeof(*rec));
    if (p->tenant == NULL || p->tenant[0] == '\0') {
        snprintf(err, cap, "a tenant is required");
        return CMX_EINVAL;
    }
    if (strlen(name) >= sizeof(rec->name) || strlen(p->tenant) >= sizeof(rec->tenant)) {
        snprintf(err, cap, "the key name and tenant are at most %zu bytes", sizeof(rec->name) - 1);
        return CMX_EINVAL;
    }
    for (const char *c = name; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            snprintf(err, cap, "the key name must not contain control characters");
            return CMX_EINVAL;
        }
    bool ok = true;
    if (cmx_config_find_tenant(cfg, p->tenant) == NULL && !store_has_tenant(s, p->tenant, &ok)) {
        if (!ok) {
            snprintf(err, cap, "the ledger database cannot be read");
            return CMX_EIO;
        }
        snprintf(err, cap,
                 "tenant '%s' is not defined (neither in the config's tenants nor through "
                 "POST /admin/v1/tenants)",
                 p->tenant);
        return CMX_EINVAL;
    }
    if (cmx_key_generate(key_text, rec->hash, rec->id) != 0) {
        snprintf(err, cap, "the system's random number generator failed");
        return CMX_EIO;
    }
    snprintf(rec->name, sizeof(rec->name), "%s", name);
    snprintf(rec->tenant, sizeof(rec->tenant), "%s", p->tenant);
    rec->created_ms = now_ms;
    rec->expires_ms = p->expires_ms;
    rec->revoked_ms = -1;
    rec->rpm = p->rpm;
    rec->tpm = p->tpm;
    rec->budget_micros = p->budget_micros;
    int rc = s->ops->key_create(s, rec, now_ms);
    if (rc != 0) {
        memset(key_text, 0, CMX_KEY_TEXT_MAX + 1);
        snprintf(err, cap, "the key could not be stored in the ledger database");
        return CMX_EIO;
    }
    return 0;
}

static void json_s(struct cmx_buf *b, const char *k, const char *v)
{
    cmx_buf_printf(b, ",\"%s\":\"", k);
    cmx_buf_json_escape(b, v, strlen(v));
    cmx_buf_puts(b, "\"");
}

static void json_time(struct cmx_buf *b, const char *k, int64_t ms)
{
    char t[40];
    if (ms < 0) {
        cmx_buf_printf(b, ",\"%s\":null", k);
        return;
    }
    cmx_clock_format_iso(ms, t, sizeof(t));
    cmx_buf_printf(b, ",\"%s\":\"%s\"", k, t);
}

static const char *key_status(const struct cmx_key_rec *k, int64_t now_ms)
{
    if (k->revoked_ms >= 0)
        return "revoked";
    if (k->expires_ms >= 0 && now_ms >= k->expires_ms)
        return "expired";
    return "active";
}

void cmx_keystore_key_json(struct cmx_buf *b, const struct cmx_key_rec *k, int64_t now_ms)
{
    char m[40];
    cmx_buf_printf(b, "{\"id\":\"%s\",\"object\":\"virtual_key\"", k->id);
    json_s(b, "name", k->name);
    json_s(b, "tenant", k->tenant);
    json_time(b, "created", k->created_ms);
    json_time(b, "expires", k->expires_ms);
    json_time(b, "revoked", k->revoked_ms);
    cmx_buf_printf(b, ",\"status\":\"%s\",\"rpm\":%d,\"tpm\":%d", key_status(k, now_ms), k->rpm,
                   k->tpm);
    if (k->budget_micros >= 0) {
        cmx_decimal_format(k->budget_micros, 6, m, sizeof(m));
        cmx_buf_printf(b, ",\"budget\":\"%s\"}", m);
    } else {
        cmx_buf_puts(b, ",\"budget\":null}");
    }
}

int cmx_keystore_list(struct cmx_ledger_store *s, bool json, int64_t now_ms, struct cmx_buf *out)
{
    struct cmx_ledger_rows rows;
    int rc = s->ops->keys_load(s, &rows);
    if (rc != 0)
        return rc;
    const struct cmx_key_rec *k = rows.rows;
    if (json) {
        cmx_buf_puts(out, "{\"object\":\"list\",\"data\":[");
        for (size_t i = 0; i < rows.n; i++) {
            if (i > 0)
                cmx_buf_puts(out, ",");
            cmx_keystore_key_json(out, &k[i], now_ms);
        }
        cmx_buf_puts(out, "]}\n");
    } else {
        cmx_buf_printf(out, "%-20s %-20s %-16s %-24s %-24s %-24s %-7s %8s %10s %16s\n", "ID",
                       "NAME", "TENANT", "CREATED", "EXPIRES", "REVOKED", "STATUS", "RPM", "TPM",
                       "BUDGET");
        for (size_t i = 0; i < rows.n; i++) {
            char c[40], e[40] = "-", r[40] = "-", m[40] = "-";
            cmx_clock_format_iso(k[i].created_ms, c, sizeof(c));
            if (k[i].expires_ms >= 0)
                cmx_clock_format_iso(k[i].expires_ms, e, sizeof(e));
            if (k[i].revoked_ms >= 0)
                cmx_clock_format_iso(k[i].revoked_ms, r, sizeof(r));
            if (k[i].budget_micros >= 0)
                cmx_decimal_format(k[i].budget_micros, 6, m, sizeof(m));
            cmx_buf_printf(out, "%-20s %-20s %-16s %-24s %-24s %-24s %-7s %8d %10d %16s\n", k[i].id,
                           k[i].name[0] ? k[i].name : "-", k[i].tenant, c, e, r,
                           key_status(&k[i], now_ms), k[i].rpm, k[i].tpm, m);
        }
    }
    free(rows.rows);
    return 0;
}

/* ---- tenants ---- */

/* Parses one canonical definition into a config holding it as tenants[0]. */
static int tenant_load(const char *canonical, struct cmx_config **cfg, struct cmx_config_diag *d)
{
    struct cmx_buf y;
    cmx_buf_init(&y, 1u << 20);
    cmx_buf_puts(&y, "tenants:\n  - ");
    cmx_buf_puts(&y, canonical);
    cmx_buf_puts(&y, "\n");
    int rc = y.data != NULL ? cmx_config_load_string(y.data, y.len, "tenant", cfg, d) : CMX_ENOMEM;
    cmx_buf_free(&y);
    if (rc == 0 && ((*cfg)->n_tenants != 1 || (*cfg)->tenants[0].name == NULL)) {
        cmx_config_unref(*cfg);
        *cfg = NULL;
        rc = CMX_EINVAL;
    }
    return rc;
}

int cmx_keystore_tenant_check(const char *json, size_t len, char **canonical, char name[64],
                              char *err, size_t cap)
{
    *canonical = NULL;
    struct json_tokener *tok = json_tokener_new();
    struct json_object *o = tok ? json_tokener_parse_ex(tok, json, (int)len) : NULL;
    bool whole = tok != NULL && json_tokener_get_error(tok) == json_tokener_success;
    for (size_t i = whole ? json_tokener_get_parse_end(tok) : 0; whole && i < len; i++)
        whole = json[i] == ' ' || json[i] == '\t' || json[i] == '\r' || json[i] == '\n';
    json_tokener_free(tok);
    if (o == NULL || !whole || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        snprintf(err, cap,
                 "the body must be one JSON object: a tenant definition such as "
                 "{\"name\":\"acme\",\"allowed_clouds\":[\"aws\"]}");
        return CMX_EINVAL;
    }
    struct json_object *n;
    if (!json_object_object_get_ex(o, "name", &n) || !json_object_is_type(n, json_type_string) ||
        json_object_get_string_len(n) == 0 || json_object_get_string_len(n) >= 64) {
        json_object_put(o);
        snprintf(err, cap, "name is required: a string of 1 to 63 characters");
        return CMX_EINVAL;
    }
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    /* the config loader expands ${VAR}: never from a request */
    if (strstr(text, "${") != NULL) {
        json_object_put(o);
        snprintf(err, cap, "a tenant definition must not contain \"${\"");
        return CMX_EINVAL;
    }
    char *c = strdup(text);
    snprintf(name, 64, "%s", json_object_get_string(n));
    json_object_put(o);
    if (c == NULL) {
        snprintf(err, cap, "out of memory");
        return CMX_ENOMEM;
    }
    struct cmx_config_diag d;
    struct cmx_config *cfg = NULL;
    cmx_config_diag_init(&d);
    int rc = tenant_load(c, &cfg, &d);
    if (rc != 0) {
        /* only the error lines, without the "tenant:LINE: " position */
        size_t w = 0;
        err[0] = '\0';
        for (char *line = d.text.data; line != NULL && *line && w + 1 < cap;) {
            char *nl = strchr(line, '\n');
            size_t ll = nl ? (size_t)(nl - line) : strlen(line);
            char *e = strstr(line, "error: ");
            if (e != NULL && e < line + ll) {
                size_t k = ll - (size_t)(e + 7 - line);
                w += (size_t)snprintf(err + w, cap - w, "%s%.*s", w ? "; " : "", (int)k, e + 7);
            }
            line = nl ? nl + 1 : NULL;
        }
        if (err[0] == '\0')
            snprintf(err, cap, "not a valid tenant definition");
        cmx_config_diag_free(&d);
        free(c);
        return CMX_EINVAL;
    }
    cmx_config_diag_free(&d);
    cmx_config_unref(cfg);
    *canonical = c;
    return 0;
}

static void json_list(struct cmx_buf *b, const char *k, const char *const *v, size_t n)
{
    if (n == 0)
        return;
    cmx_buf_printf(b, ",\"%s\":[", k);
    for (size_t i = 0; i < n; i++) {
        cmx_buf_puts(b, i ? ",\"" : "\"");
        cmx_buf_json_escape(b, v[i], strlen(v[i]));
        cmx_buf_puts(b, "\"");
    }
    cmx_buf_puts(b, "]");
}

void cmx_keystore_tenant_json(struct cmx_buf *b, const struct cmx_tenant_cfg *t)
{
    cmx_buf_puts(b, "{\"name\":\"");
    cmx_buf_json_escape(b, t->name, strlen(t->name));
    cmx_buf_puts(b, "\"");
    json_list(b, "preferred_clouds", t->preferred_clouds, t->n_preferred_clouds);
    json_list(b, "allowed_clouds", t->allowed_clouds, t->n_allowed_clouds);
    json_list(b, "regions", t->regions, t->n_regions);
    json_list(b, "models", t->models, t->n_models);
    if (t->budget_micros >= 0) {
        char m[40];
        /* two decimals read as money; more when the amount needs them */
        if (t->budget_micros % 10000 != 0)
            cmx_decimal_format(t->budget_micros, 6, m, sizeof(m));
        else
            cmx_decimal_format(t->budget_micros / 10000, 2, m, sizeof(m));
        cmx_buf_printf(b, ",\"budget\":{\"amount\":\"%s\",\"currency\":\"%s\",\"period\":\"%s\"}",
                       m, t->budget_currency ? t->budget_currency : "USD",
                       t->budget_period ? t->budget_period : "month");
    }
    if (t->rpm > 0 || t->tpm > 0) {
        cmx_buf_puts(b, ",\"limits\":{");
        if (t->rpm > 0)
            cmx_buf_printf(b, "\"rpm\":%d", t->rpm);
        if (t->tpm > 0)
            cmx_buf_printf(b, "%s\"tpm\":%d", t->rpm > 0 ? "," : "", t->tpm);
        cmx_buf_puts(b, "}");
    }
    cmx_buf_puts(b, "}");
}

/* ---- the snapshot ---- */

struct cmx_tenant_set *cmx_tenant_set_build(const struct cmx_ledger_rows *rows)
{
    struct cmx_tenant_set *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->cfgs = calloc(rows->n ? rows->n : 1, sizeof(*s->cfgs))) == NULL) {
        free(s);
        return NULL;
    }
    atomic_init(&s->refcount, 1);
    const struct cmx_ledger_tenant_row *r = rows->rows;
    for (size_t i = 0; i < rows->n; i++) {
        struct cmx_config *cfg = NULL;
        if (tenant_load(r[i].definition, &cfg, NULL) != 0) {
            cmx_log(CMX_LOG_WARN, "keys: stored tenant '%s' no longer parses; skipped", r[i].name);
            continue;
        }
        s->cfgs[s->n++] = cfg;
    }
    return s;
}

struct cmx_tenant_set *cmx_tenant_set_ref(struct cmx_tenant_set *s)
{
    if (s != NULL)
        atomic_fetch_add(&s->refcount, 1);
    return s;
}

void cmx_tenant_set_unref(struct cmx_tenant_set *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refcount, 1) != 1)
        return;
    for (size_t i = 0; i < s->n; i++)
        cmx_config_unref(s->cfgs[i]);
    free(s->cfgs);
    free(s);
}

const struct cmx_tenant_cfg *cmx_tenant_set_find(const struct cmx_tenant_set *s, const char *name)
{
    for (size_t i = 0; s != NULL && name != NULL && i < s->n; i++)
        if (strcmp(s->cfgs[i]->tenants[0].name, name) == 0)
            return &s->cfgs[i]->tenants[0];
    return NULL;
}

static pthread_mutex_t current_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cmx_tenant_set *current;
static atomic_size_t current_n; /* current->n, read without the lock */

void cmx_tenants_publish(struct cmx_tenant_set *s)
{
    pthread_mutex_lock(&current_mu);
    struct cmx_tenant_set *old = current;
    current = s;
    atomic_store_explicit(&current_n, s != NULL ? s->n : 0, memory_order_relaxed);
    pthread_mutex_unlock(&current_mu);
    cmx_tenant_set_unref(old);
}

size_t cmx_tenants_stored(void)
{
    return atomic_load_explicit(&current_n, memory_order_relaxed);
}

struct cmx_tenant_set *cmx_tenants_acquire(void)
{
    pthread_mutex_lock(&current_mu);
    struct cmx_tenant_set *s = current;
    if (s != NULL)
        atomic_fetch_add(&s->refcount, 1);
    pthread_mutex_unlock(&current_mu);
    return s;
}

static void set_cleanup(void *p)
{
    cmx_tenant_set_unref(p);
}

const struct cmx_tenant_cfg *cmx_tenants_resolve(struct cmx_arena *arena,
                                                 const struct cmx_config *cfg, const char *name)
{
    struct cmx_tenant_set *s = cmx_tenants_acquire();
    const struct cmx_tenant_cfg *t = cmx_tenant_set_find(s, name);
    if (t != NULL && cmx_arena_cleanup_add(arena, set_cleanup, s) == 0)
        return t;
    cmx_tenant_set_unref(s);
    return cmx_config_find_tenant(cfg, name);
}
