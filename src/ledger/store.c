/* The ledger's stores: choosing a backend by URL, and the migrations both apply. */
#include "ledger/store.h"
#include "core/clock.h"
#include "core/err.h"
#include "core/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Version i + 1 is cmx_ledger_migrations[i]. Append only: a released migration never
 * changes. SQL common to SQLite and PostgreSQL, with the dialect's substitutions:
 * "%WITHOUT_ROWID%" (SQLite: the primary key is the table, one b-tree insert per row), "%ID%"
 * (an integer primary key the database assigns), "%DAY(expr)%" (the UTC day 'YYYY-MM-DD' of
 * expr, milliseconds since the epoch). */
const char *const cmx_ledger_migrations[] = {
    /* 1: usage, accruals, caps */
    "CREATE TABLE usage ("
    " record_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, ts_ms BIGINT NOT NULL, period TEXT NOT "
    "NULL,"
    " day TEXT NOT NULL, model TEXT NOT NULL, product TEXT NOT NULL, provider TEXT NOT NULL,"
    " cloud TEXT NOT NULL, region TEXT NOT NULL, agreements TEXT NOT NULL,"
    " prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,"
    " cached_tokens BIGINT NOT NULL, reasoning_tokens BIGINT NOT NULL,"
    " estimated INTEGER NOT NULL, stream INTEGER NOT NULL, status INTEGER NOT NULL,"
    " latency_ms BIGINT NOT NULL, revenue_micros BIGINT NOT NULL, cost_micros BIGINT NOT NULL)"
    "%WITHOUT_ROWID%;"
    "CREATE TABLE accruals ("
    " record_id TEXT NOT NULL REFERENCES usage (record_id), request_id TEXT NOT NULL,"
    " ts_ms BIGINT NOT NULL,"
    " period TEXT NOT NULL, day TEXT NOT NULL, agreement TEXT NOT NULL, payee TEXT NOT NULL,"
    " term INTEGER NOT NULL, rate_ppm BIGINT NOT NULL, currency TEXT NOT NULL,"
    " base_micros BIGINT NOT NULL, amount_micros BIGINT NOT NULL,"
    " accrued_micros BIGINT NOT NULL, over_cap_micros BIGINT NOT NULL, cap_micros BIGINT);"
    "CREATE INDEX accruals_payee ON accruals (payee, day);"
    "CREATE TABLE caps ("
    " agreement TEXT NOT NULL, payee TEXT NOT NULL, term INTEGER NOT NULL,"
    " cap_micros BIGINT NOT NULL, accrued_micros BIGINT NOT NULL,"
    " PRIMARY KEY (agreement, payee, term));",
    /* 2: virtual keys, admin-defined tenants, who each usage row ran as */
    "ALTER TABLE usage ADD COLUMN tenant TEXT;"
    "ALTER TABLE usage ADD COLUMN key_id TEXT;"
    "CREATE INDEX usage_tenant ON usage (tenant, ts_ms);"
    "CREATE INDEX usage_key ON usage (key_id, ts_ms);"
    "CREATE TABLE keys ("
    " id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, tenant TEXT NOT NULL,"
    " created_ms BIGINT NOT NULL, expires_ms BIGINT, revoked_ms BIGINT, rpm INTEGER NOT NULL,"
    " tpm INTEGER NOT NULL, budget_micros BIGINT, updated_ms BIGINT NOT NULL);"
    "CREATE TABLE tenants ("
    " name TEXT PRIMARY KEY, definition TEXT NOT NULL, updated_ms BIGINT NOT NULL,"
    " deleted_ms BIGINT);"
    "CREATE TABLE admin_changes (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL);"
    "INSERT INTO admin_changes (id, seq) VALUES (1, 0);",
    /* 3: the tenant / key indexes cover only rows that have one, so that open-mode records
     * (the most frequent, on the writer's path) pay for no index entry */
    "DROP INDEX usage_tenant;"
    "DROP INDEX usage_key;"
    "CREATE INDEX usage_tenant ON usage (tenant, ts_ms) WHERE tenant IS NOT NULL;"
    "CREATE INDEX usage_key ON usage (key_id, ts_ms) WHERE key_id IS NOT NULL;",
    /* 4: narrow rows (the writer's cost is per column and per byte): what repeats from one
     * request to the next (model, product, provider, cloud, region, agreements; an accrual's
     * term, rate, currency and cap) is stored once in ledger_dims / ledger_terms and referred
     * to by id; day and period are derived from ts_ms; an accrual row is keyed by its term
     * and time (statements read one range per term, no secondary index). The views usage
     * and accruals keep the version-3 columns for reading. */
    "CREATE TABLE ledger_dims ("
    " id %ID%, model TEXT NOT NULL, product TEXT NOT NULL, provider TEXT NOT NULL,"
    " cloud TEXT NOT NULL, region TEXT NOT NULL, agreements TEXT NOT NULL,"
    " UNIQUE (model, product, provider, cloud, region, agreements));"
    "CREATE TABLE ledger_terms ("
    " id %ID%, agreement TEXT NOT NULL, payee TEXT NOT NULL, term INTEGER NOT NULL,"
    " rate_ppm BIGINT NOT NULL, currency TEXT NOT NULL, cap_micros BIGINT NOT NULL,"
    " UNIQUE (agreement, payee, term, rate_ppm, currency, cap_micros));"
    "CREATE TABLE ledger_usage ("
    " record_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, ts_ms BIGINT NOT NULL,"
    " dim_id BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL,"
    " cached_tokens BIGINT NOT NULL, reasoning_tokens BIGINT NOT NULL,"
    " estimated INTEGER NOT NULL, stream INTEGER NOT NULL, status INTEGER NOT NULL,"
    " latency_ms BIGINT NOT NULL, revenue_micros BIGINT NOT NULL, cost_micros BIGINT NOT NULL,"
    " tenant TEXT, key_id TEXT)%WITHOUT_ROWID%;"
    "CREATE TABLE ledger_accruals ("
    " term_id BIGINT NOT NULL, ts_ms BIGINT NOT NULL, record_id TEXT NOT NULL,"
    " base_micros BIGINT NOT NULL, amount_micros BIGINT NOT NULL,"
    " accrued_micros BIGINT NOT NULL, over_cap_micros BIGINT NOT NULL,"
    " PRIMARY KEY (term_id, ts_ms, record_id))%WITHOUT_ROWID%;"
    "INSERT INTO ledger_dims (model, product, provider, cloud, region, agreements)"
    " SELECT DISTINCT model, product, provider, cloud, region, agreements FROM usage;"
    "INSERT INTO ledger_terms (agreement, payee, term, rate_ppm, currency, cap_micros)"
    " SELECT DISTINCT agreement, payee, term, rate_ppm, currency, COALESCE(cap_micros, -1)"
    " FROM accruals;"
    "INSERT INTO ledger_usage (record_id, request_id, ts_ms, dim_id, prompt_tokens,"
    " completion_tokens, cached_tokens, reasoning_tokens, estimated, stream, status, latency_ms,"
    " revenue_micros, cost_micros, tenant, key_id)"
    " SELECT u.record_id, u.request_id, u.ts_ms, d.id, u.prompt_tokens, u.completion_tokens,"
    " u.cached_tokens, u.reasoning_tokens, u.estimated, u.stream, u.status, u.latency_ms,"
    " u.revenue_micros, u.cost_micros, u.tenant, u.key_id FROM usage u JOIN ledger_dims d"
    " ON d.model = u.model AND d.product = u.product AND d.provider = u.provider"
    " AND d.cloud = u.cloud AND d.region = u.region AND d.agreements = u.agreements;"
    "INSERT INTO ledger_accruals (term_id, ts_ms, record_id, base_micros, amount_micros,"
    " accrued_micros, over_cap_micros)"
    " SELECT t.id, a.ts_ms, a.record_id, a.base_micros, a.amount_micros, a.accrued_micros,"
    " a.over_cap_micros FROM accruals a JOIN ledger_terms t ON t.agreement = a.agreement"
    " AND t.payee = a.payee AND t.term = a.term AND t.rate_ppm = a.rate_ppm"
    " AND t.currency = a.currency AND t.cap_micros = COALESCE(a.cap_micros, -1);"
    "DROP TABLE accruals;"
    "DROP TABLE usage;"
    "CREATE INDEX ledger_usage_tenant ON ledger_usage (tenant, ts_ms) WHERE tenant IS NOT NULL;"
    "CREATE INDEX ledger_usage_key ON ledger_usage (key_id, ts_ms) WHERE key_id IS NOT NULL;"
    "CREATE VIEW usage AS SELECT u.record_id, u.request_id, u.ts_ms,"
    " substr(%DAY(u.ts_ms)%, 1, 7) AS period, %DAY(u.ts_ms)% AS day, d.model, d.product,"
    " d.provider, d.cloud, d.region, d.agreements, u.prompt_tokens, u.completion_tokens,"
    " u.cached_tokens, u.reasoning_tokens, u.estimated, u.stream, u.status, u.latency_ms,"
    " u.revenue_micros, u.cost_micros, u.tenant, u.key_id"
    " FROM ledger_usage u JOIN ledger_dims d ON d.id = u.dim_id;"
    "CREATE VIEW accruals AS SELECT a.record_id, u.request_id, a.ts_ms,"
    " substr(%DAY(a.ts_ms)%, 1, 7) AS period, %DAY(a.ts_ms)% AS day, t.agreement, t.payee,"
    " t.term, t.rate_ppm, t.currency, a.base_micros, a.amount_micros, a.accrued_micros,"
    " a.over_cap_micros, NULLIF(t.cap_micros, -1) AS cap_micros"
    " FROM ledger_accruals a JOIN ledger_terms t ON t.id = a.term_id"
    " JOIN ledger_usage u ON u.record_id = a.record_id;",
};
const size_t cmx_ledger_n_migrations =
    sizeof(cmx_ledger_migrations) / sizeof(cmx_ledger_migrations[0]);

/* Appends n bytes of p to *w (when out is not NULL) and counts them in *len. */
static void emit(char **w, size_t *len, const char *p, size_t n)
{
    if (*w != NULL) {
        memcpy(*w, p, n);
        *w += n;
    }
    *len += n;
}

/* Writes m with d's substitutions into out (NULL: only measures); returns the length. */
static size_t substitute(const char *m, const struct cmx_ledger_dialect *d, char *out)
{
    char *w = out;
    size_t len = 0;
    for (const char *p = m;;) {
        const char *q = strchr(p, '%');
        if (q == NULL) {
            emit(&w, &len, p, strlen(p));
            break;
        }
        emit(&w, &len, p, (size_t)(q - p));
        const char *arg_end;
        if (strncmp(q, "%WITHOUT_ROWID%", 15) == 0) {
            emit(&w, &len, d->without_rowid, strlen(d->without_rowid));
            p = q + 15;
        } else if (strncmp(q, "%ID%", 4) == 0) {
            emit(&w, &len, d->id, strlen(d->id));
            p = q + 4;
        } else if (strncmp(q, "%DAY(", 5) == 0 && (arg_end = strstr(q + 5, ")%")) != NULL &&
                   arg_end - (q + 5) < 40) {
            emit(&w, &len, d->day[0], strlen(d->day[0]));
            emit(&w, &len, q + 5, (size_t)(arg_end - (q + 5)));
            emit(&w, &len, d->day[1], strlen(d->day[1]));
            p = arg_end + 2;
        } else {
            emit(&w, &len, q, 1);
            p = q + 1;
        }
    }
    if (w != NULL)
        *w = '\0';
    return len;
}

char *cmx_ledger_migration_sql(size_t i, const struct cmx_ledger_dialect *d)
{
    const char *m = cmx_ledger_migrations[i];
    char *out = malloc(substitute(m, d, NULL) + 1);
    if (out != NULL)
        substitute(m, d, out);
    return out;
}

void cmx_ledger_tenant_rows_free(struct cmx_ledger_rows *rows)
{
    struct cmx_ledger_tenant_row *t = rows->rows;
    for (size_t i = 0; i < rows->n; i++)
        free(t[i].definition);
    free(rows->rows);
    rows->rows = NULL;
    rows->n = 0;
}

const struct cmx_ledger_store_ops *cmx_ledger_store_for(const char *url)
{
    if (url == NULL)
        return NULL;
    if (strncmp(url, "sqlite://", 9) == 0 && url[9] != '\0')
        return &cmx_ledger_sqlite_ops;
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return &cmx_ledger_pg_ops;
    return NULL;
}

int cmx_ledger_store_open(const char *url, struct cmx_ledger_store **out, char *err, size_t err_cap)
{
    const struct cmx_ledger_store_ops *ops = cmx_ledger_store_for(url);
    *out = NULL;
    if (ops == NULL) {
        snprintf(err, err_cap, "unsupported ledger url (sqlite://PATH or postgres://...)");
        return CMX_EINVAL;
    }
    return ops->open(url, out, err, err_cap);
}

void *cmx_ledger_rows_grow(void *rows, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return rows;
    size_t nc = *cap ? *cap * 2 : 16;
    void *nr = realloc(rows, nc * elem);
    if (nr != NULL)
        *cap = nc;
    return nr;
}

/* A statement's SQL (parameters p: payee, from_ms, to_ms) into q: a line per agreement
 * version, term, rate and currency (a rate edited in place is a line of its own), with the
 * term's cap as the config last stated it and everything accrued against it so far. */
#define CAP_ROW                                                                                    \
    " FROM caps c WHERE c.agreement = t.agreement AND c.payee = t.payee AND c.term = t.term"
static void statement_sql(char *q, size_t cap, const char *const p[3])
{
    snprintf(q, cap,
             "SELECT t.agreement, t.term, t.rate_ppm, t.currency, SUM(a.base_micros),"
             " SUM(a.amount_micros), SUM(a.accrued_micros), SUM(a.over_cap_micros),"
             " CASE WHEN MAX(t.cap_micros) >= 0 THEN (SELECT c.cap_micros" CAP_ROW ") END,"
             " COUNT(*), (SELECT c.accrued_micros" CAP_ROW ")"
             " FROM ledger_terms t JOIN ledger_accruals a ON a.term_id = t.id"
             " WHERE t.payee = %s AND a.ts_ms >= %s AND a.ts_ms < %s"
             " GROUP BY t.agreement, t.payee, t.term, t.rate_ppm, t.currency"
             " ORDER BY t.agreement, t.term, MIN(a.ts_ms)",
             p[0], p[1], p[2]);
}

/* Usage's SQL grouped by by (parameters p: from_ms, to_ms) into q; CMX_EINVAL for another
 * by. */
static int usage_sql(char *q, size_t cap, const char *by, const struct cmx_ledger_dialect *d,
                     const char *const p[2])
{
    char day[160];
    const char *col = NULL;
    if (by == NULL)
        col = "''";
    else if (strcmp(by, "model") == 0)
        col = "d.model";
    else if (strcmp(by, "cloud") == 0)
        col = "d.cloud";
    else if (strcmp(by, "provider") == 0)
        col = "d.provider";
    else if (strcmp(by, "tenant") == 0)
        col = "u.tenant";
    else if (strcmp(by, "key_id") == 0)
        col = "u.key_id";
    else if (strcmp(by, "day") == 0) {
        snprintf(day, sizeof(day), "%su.ts_ms%s", d->day[0], d->day[1]);
        col = day;
    } else
        return CMX_EINVAL;
    bool dims = col[0] == 'd' && col[1] == '.';
    snprintf(q, cap,
             "SELECT %s, COUNT(*), COALESCE(SUM(u.prompt_tokens), 0),"
             " COALESCE(SUM(u.completion_tokens), 0), COALESCE(SUM(u.cached_tokens), 0),"
             " COALESCE(SUM(u.reasoning_tokens), 0), COALESCE(SUM(u.estimated), 0),"
             " COALESCE(SUM(u.revenue_micros), 0), COALESCE(SUM(u.cost_micros), 0)"
             " FROM ledger_usage u%s WHERE u.ts_ms >= %s AND u.ts_ms < %s%s%s%s%s",
             col, dims ? " JOIN ledger_dims d ON d.id = u.dim_id" : "", p[0], p[1],
             by ? " GROUP BY " : "", by ? col : "", by ? " ORDER BY " : "", by ? col : "");
    return 0;
}

/* The UTC milliseconds [from, to) of period ("YYYY-MM" or "YYYY-MM-DD"; NULL: all time) as
 * decimal strings. 0, or CMX_EINVAL with a message in err for a malformed period. */
static int period_range(const char *period, char from[24], char to[24], char *err, size_t err_cap)
{
    int64_t a = 0, b = INT64_MAX;
    if (period != NULL) {
        if (!cmx_ledger_period_ok(period)) {
            snprintf(err, err_cap, "period must be YYYY-MM or YYYY-MM-DD");
            return CMX_EINVAL;
        }
        size_t n = strlen(period);
        int64_t y = atoi(period);
        unsigned m = (unsigned)atoi(period + 5), d = n == 10 ? (unsigned)atoi(period + 8) : 1;
        int64_t day = cmx_clock_days_from_civil(y, m, d);
        int64_t next = n == 10   ? day + 1
                       : m == 12 ? cmx_clock_days_from_civil(y + 1, 1, 1)
                                 : cmx_clock_days_from_civil(y, m + 1, 1);
        a = day * 86400000;
        b = next * 86400000;
    }
    snprintf(from, 24, "%lld", (long long)a);
    snprintf(to, 24, "%lld", (long long)b);
    return 0;
}

int cmx_ledger_statement_query(const char *period, const char *const ph[3], char *q, size_t q_cap,
                               char from[24], char to[24], char *err, size_t err_cap)
{
    if (period_range(period, from, to, err, err_cap) != 0)
        return CMX_EINVAL;
    statement_sql(q, q_cap, ph);
    return 0;
}

int cmx_ledger_usage_query(const char *period, const char *by, const struct cmx_ledger_dialect *d,
                           const char *const ph[2], char *q, size_t q_cap, char from[24],
                           char to[24], char *err, size_t err_cap)
{
    if (period_range(period, from, to, err, err_cap) != 0)
        return CMX_EINVAL;
    if (usage_sql(q, q_cap, by, d, ph) != 0) {
        snprintf(err, err_cap, "by must be model, cloud, provider, day, tenant or key");
        return CMX_EINVAL;
    }
    return 0;
}

/* ---- ids of dimension and term rows -------------------------------------------------- */

static void put_field(char **w, const char *end, const char *v)
{
    size_t n = strlen(v), room = (size_t)(end - *w);
    if (room == 0)
        return;
    if (n > room - 1)
        n = room - 1;
    memcpy(*w, v, n);
    *w += n;
    *(*w)++ = '\x1f'; /* unit separator: no field of a config holds it */
}

size_t cmx_ledger_term_key(const struct cmx_ledger_accrual *a, char *buf, size_t cap)
{
    char *w = buf, *end = buf + cap;
    put_field(&w, end, a->agreement);
    put_field(&w, end, a->payee);
    put_field(&w, end, a->currency);
    int64_t num[3] = {a->term, a->rate_ppm, a->has_cap ? a->cap_micros : -1};
    if ((size_t)(end - w) >= sizeof(num)) {
        memcpy(w, num, sizeof(num));
        w += sizeof(num);
    }
    return (size_t)(w - buf);
}

int64_t cmx_ledger_ids_find(struct cmx_ledger_ids *t, const char *key, size_t len)
{
    if (t->cap == 0)
        return -1;
    /* the records of a batch mostly share their dimensions: the last hit first, unhashed */
    const struct cmx_ledger_id_ent *e = &t->e[t->last];
    if (e->key != NULL && e->len == len && memcmp(e->key, key, len) == 0)
        return e->id;
    uint64_t h = cmx_fnv1a(CMX_FNV1A_INIT, key, len);
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        e = &t->e[i];
        if (e->key == NULL)
            return -1;
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) {
            t->last = i;
            return e->id;
        }
    }
}

int cmx_ledger_ids_add(struct cmx_ledger_ids *t, const char *key, size_t len, int64_t id)
{
    if ((t->n + 1) * 2 > t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        struct cmx_ledger_id_ent *ne = calloc(nc, sizeof(*ne));
        if (ne == NULL)
            return CMX_ENOMEM;
        for (size_t i = 0; i < t->cap; i++) {
            if (t->e[i].key == NULL)
                continue;
            size_t j = t->e[i].hash & (nc - 1);
            while (ne[j].key != NULL)
                j = (j + 1) & (nc - 1);
            ne[j] = t->e[i];
        }
        free(t->e);
        t->e = ne;
        t->cap = nc;
    }
    char *k = malloc(len);
    if (k == NULL)
        return CMX_ENOMEM;
    memcpy(k, key, len);
    uint64_t h = cmx_fnv1a(CMX_FNV1A_INIT, key, len);
    size_t i = h & (t->cap - 1);
    while (t->e[i].key != NULL)
        i = (i + 1) & (t->cap - 1);
    t->e[i] = (struct cmx_ledger_id_ent){.key = k, .len = len, .hash = h, .id = id};
    t->n++;
    t->last = i;
    return 0;
}

void cmx_ledger_ids_clear(struct cmx_ledger_ids *t)
{
    for (size_t i = 0; i < t->cap; i++)
        free(t->e[i].key);
    free(t->e);
    *t = (struct cmx_ledger_ids){0};
}
