/* The ledger's stores: choosing a backend by URL, and the migrations both apply. */
#include "ledger/store.h"
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Version i + 1 is cmx_ledger_migrations[i]. Append only: a released migration never
 * changes. SQL common to SQLite and PostgreSQL; "%WITHOUT_ROWID%" becomes " WITHOUT ROWID"
 * on SQLite (the primary key is the table: one b-tree insert per record) and nothing on
 * PostgreSQL. */
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
};
const size_t cmx_ledger_n_migrations =
    sizeof(cmx_ledger_migrations) / sizeof(cmx_ledger_migrations[0]);

char *cmx_ledger_migration_sql(size_t i, const char *without_rowid)
{
    const char *m = cmx_ledger_migrations[i];
    const char *tok = "%WITHOUT_ROWID%";
    size_t tl = strlen(tok), wl = strlen(without_rowid), n = 0;
    for (const char *p = strstr(m, tok); p != NULL; p = strstr(p + tl, tok))
        n++;
    char *out = malloc(strlen(m) + n * wl + 1);
    if (out == NULL)
        return NULL;
    char *w = out;
    for (const char *p = m;;) {
        const char *q = strstr(p, tok);
        size_t k = q ? (size_t)(q - p) : strlen(p);
        memcpy(w, p, k);
        w += k;
        if (q == NULL)
            break;
        memcpy(w, without_rowid, wl);
        w += wl;
        p = q + tl;
    }
    *w = '\0';
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

void cmx_ledger_statement_sql(char *q, size_t cap, const char *p1, const char *p2)
{
    snprintf(q, cap,
             "SELECT a.agreement, a.term, MAX(a.rate_ppm), MAX(a.currency), SUM(a.base_micros),"
             " SUM(a.amount_micros), SUM(a.accrued_micros), SUM(a.over_cap_micros),"
             " MAX(a.cap_micros), COUNT(*), (SELECT c.cap_micros - c.accrued_micros FROM caps c"
             " WHERE c.agreement = a.agreement AND c.payee = a.payee AND c.term = a.term)"
             " FROM accruals a WHERE a.payee = %s AND a.day LIKE %s"
             " GROUP BY a.agreement, a.payee, a.term ORDER BY a.agreement, a.term",
             p1, p2);
}

void cmx_ledger_usage_sql(char *q, size_t cap, const char *by, const char *p1)
{
    snprintf(q, cap,
             "SELECT %s, COUNT(*), COALESCE(SUM(prompt_tokens), 0),"
             " COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cached_tokens), 0),"
             " COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(estimated), 0),"
             " COALESCE(SUM(revenue_micros), 0), COALESCE(SUM(cost_micros), 0)"
             " FROM usage WHERE day LIKE %s%s%s%s%s",
             by ? by : "''", p1, by ? " GROUP BY " : "", by ? by : "", by ? " ORDER BY " : "",
             by ? by : "");
}
