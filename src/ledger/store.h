/* The ledger's storage interface: one ops table per backend (store_sqlite.c, store_pg.c),
 * the same schema in both, versioned migrations applied at open.
 *
 * Schema (version 4; migrations in store.c):
 *   ledger_schema(version)                       applied migrations
 *   ledger_dims(id PK, model, product, provider, cloud, region, agreements UNIQUE together)
 *         what repeats from one request to the next, stored once
 *   ledger_terms(id PK, agreement 'id@effective', payee, term, rate_ppm, currency,
 *         cap_micros (-1: uncapped), UNIQUE together)       a revenue-share term as accrued
 *   ledger_usage(record_id PK, request_id, ts_ms, dim_id -> ledger_dims, prompt/completion/
 *         cached/reasoning tokens, estimated, stream, status, latency_ms, revenue_micros,
 *         cost_micros, tenant NULL, key_id NULL)           one row per request
 *   ledger_accruals(term_id -> ledger_terms, ts_ms, record_id -> ledger_usage, base_micros,
 *         amount_micros, accrued_micros, over_cap_micros; PK (term_id, ts_ms, record_id))
 *   caps(agreement, payee, term PK, cap_micros, accrued_micros)   running total per cap
 *   views usage and accruals: the rows joined with their dimensions and terms, with period
 *         'YYYY-MM' and day 'YYYY-MM-DD' (UTC) of ts_ms - the version-3 columns, for reading
 *
 * Keys and admin-defined tenants (version 2; src/keys/keystore.h):
 *   keys(id PK, hash UNIQUE, name, tenant, created_ms, expires_ms NULL, revoked_ms NULL,
 *        rpm, tpm, budget_micros NULL, updated_ms)      only the SHA-256 of a key is stored
 *   tenants(name PK, definition JSON, updated_ms, deleted_ms NULL)   the config's shape
 *   admin_changes(id PK = 1, seq)   bumped by every key / tenant write in its transaction:
 *        the change stamp every gateway polls
 *
 * A store is used by one thread at a time. */
#ifndef CMX_LEDGER_STORE_H
#define CMX_LEDGER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ledger/ledger.h"

struct cmx_ledger_store;

/* One statement row: an (agreement version, term) of the payee in the period. */
struct cmx_ledger_stmt_row {
    char agreement[CMX_LEDGER_NAME]; /* "id@effective" */
    int term;                        /* term index in the version */
    int64_t rate_ppm;                /* its rate */
    char currency[8];                /* its currency */
    int64_t base_micros;             /* sum of the requests' revenue */
    int64_t amount_micros;           /* sum of revenue x rate (accrued + over-cap) */
    int64_t accrued_micros;          /* sum accrued */
    int64_t over_cap_micros;         /* sum over the cap */
    bool has_cap;                    /* capped term */
    int64_t cap_micros;              /* the cap (as the config last stated it) */
    int64_t cap_remaining_micros;    /* cap - everything accrued so far (all periods), >= 0 */
    int64_t requests;                /* accrual rows */
};

/* What a cap leaves once accrued has been accrued against it: never negative (a cap lowered
 * in place below what was already accrued leaves nothing). */
static inline int64_t cmx_ledger_cap_left(int64_t cap, int64_t accrued)
{
    return cap > accrued ? cap - accrued : 0;
}

/* One usage row: a group (or the total). */
struct cmx_ledger_usage_row {
    char key[CMX_LEDGER_NAME]; /* model, cloud, provider, day, tenant or key id; "" for the total */
    int64_t requests;
    int64_t prompt_tokens;
    int64_t completion_tokens;
    int64_t cached_tokens;
    int64_t reasoning_tokens;
    int64_t estimated; /* records with estimated tokens */
    int64_t revenue_micros;
    int64_t cost_micros;
};

/* The caps a write transaction touched: each (agreement, payee, term) row is read and locked
 * once per transaction, then kept here; the totals are written back before COMMIT. Valid
 * only while the transaction holds the lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: FOR
 * UPDATE). */
#define CMX_LEDGER_CAP_CACHE 64
struct cmx_ledger_cap_cache {
    struct {
        const struct cmx_ledger_accrual *key; /* agreement, payee, term (first seen) */
        int64_t accrued;                      /* total so far, this transaction included */
        int64_t added;                        /* accrued by this transaction */
    } e[CMX_LEDGER_CAP_CACHE];
    size_t n;
};

/* The entry of a's cap, NULL when not cached yet. */
static inline size_t cmx_ledger_cap_find(const struct cmx_ledger_cap_cache *c,
                                         const struct cmx_ledger_accrual *a)
{
    for (size_t i = 0; i < c->n; i++) {
        const struct cmx_ledger_accrual *k = c->e[i].key;
        if (k->term == a->term && strcmp(k->agreement, a->agreement) == 0 &&
            strcmp(k->payee, a->payee) == 0)
            return i;
    }
    return (size_t)-1;
}

/* Rows of a query, malloc'd (free rows). */
struct cmx_ledger_rows {
    void *rows;
    size_t n;
};

/* A tenant stored by the admin API (src/keys/keystore.h). */
struct cmx_ledger_tenant_row {
    char name[64];
    char *definition; /* JSON object text, malloc'd */
    int64_t updated_ms;
};

/* Frees rows of cmx_ledger_tenant_row (their definitions too). */
void cmx_ledger_tenant_rows_free(struct cmx_ledger_rows *rows);

struct cmx_key_rec;

struct cmx_ledger_store_ops {
    const char *scheme; /* "sqlite" / "postgres" */
    /* Opens (creating when needed) and migrates the store at url. 0 and *out; CMX_EIO with
     * a message in err when unreachable; CMX_EINVAL for a bad URL. */
    int (*open)(const char *url, struct cmx_ledger_store **out, char *err, size_t err_cap);
    /* Whether the store at url was ever created (a report must not create one); err gets
     * why not. NULL for a backend whose store is a server's (always there to ask). */
    bool (*exists)(const char *url, char *err, size_t err_cap);
    /* Inserts recs[0..n) in one transaction; a request id already present is skipped with
     * its accruals (idempotent replay). Caps: each accrual reads and updates its caps row
     * under a lock, so the cap holds across processes. sync: commit durably before
     * returning. Returns 0; CMX_EIO when the store is unreachable (nothing committed). */
    int (*write)(struct cmx_ledger_store *s, struct cmx_ledger_rec *const *recs, size_t n,
                 bool sync);
    /* Statement rows of payee in period ("YYYY-MM" or "YYYY-MM-DD", UTC; NULL: all). */
    int (*statement)(struct cmx_ledger_store *s, const char *payee, const char *period,
                     struct cmx_ledger_rows *out, char *err, size_t err_cap);
    /* Usage rows in period grouped by by ("model", "cloud", "provider", "day", "tenant",
     * "key_id"; NULL: totals). */
    int (*usage)(struct cmx_ledger_store *s, const char *period, const char *by,
                 struct cmx_ledger_rows *out, char *err, size_t err_cap);
    /* Number of usage rows (tests). */
    int64_t (*count)(struct cmx_ledger_store *s);

    /* ---- keys and tenants (migration 2). Each write is one transaction that also bumps the
     * change stamp. Return 0; CMX_EIO when the store fails (message in err when given). */
    /* Inserts k (its hash, never the key). CMX_EINVAL when the id or hash is taken. */
    int (*key_create)(struct cmx_ledger_store *s, const struct cmx_key_rec *k, int64_t now_ms);
    /* Sets revoked_ms = now_ms on key id unless already revoked (idempotent: *was_revoked
     * then true, the first time kept). CMX_ENOTFOUND for an unknown id. */
    int (*key_revoke)(struct cmx_ledger_store *s, const char *id, int64_t now_ms,
                      bool *was_revoked);
    /* Every key, revoked ones included, as struct cmx_key_rec rows ordered by created_ms. */
    int (*keys_load)(struct cmx_ledger_store *s, struct cmx_ledger_rows *out);
    /* The change stamp: a number that changes whenever a key or tenant is written. One
     * indexed read; -1 on failure. */
    int64_t (*stamp)(struct cmx_ledger_store *s);
    /* Inserts or replaces tenant name (undeleting it). */
    int (*tenant_put)(struct cmx_ledger_store *s, const char *name, const char *definition,
                      int64_t now_ms);
    /* Marks tenant name deleted. CMX_ENOTFOUND when no live tenant has that name. */
    int (*tenant_delete)(struct cmx_ledger_store *s, const char *name, int64_t now_ms);
    /* The live tenants as struct cmx_ledger_tenant_row, ordered by name. */
    int (*tenants_load)(struct cmx_ledger_store *s, struct cmx_ledger_rows *out);
    /* Sum of revenue_micros of the usage rows of tenant (key_id NULL) or of key key_id
     * (tenant NULL) with from_ms <= ts_ms < to_ms, into *sum. */
    int (*spent)(struct cmx_ledger_store *s, const char *tenant, const char *key_id,
                 int64_t from_ms, int64_t to_ms, int64_t *sum);
    void (*close)(struct cmx_ledger_store *s);
};

struct cmx_ledger_store {
    const struct cmx_ledger_store_ops *ops; /* its backend */
};

extern const struct cmx_ledger_store_ops cmx_ledger_sqlite_ops;
extern const struct cmx_ledger_store_ops cmx_ledger_pg_ops;

/* Room for one more row: returns rows (realloc'd, doubling *cap from 16) so that index n is
 * valid, or NULL on allocation failure (rows untouched, still owned by the caller). */
void *cmx_ledger_rows_grow(void *rows, size_t n, size_t *cap, size_t elem);

/* What differs between the backends' SQL. */
struct cmx_ledger_dialect {
    const char *without_rowid; /* appended to CREATE TABLE of a table stored by its key */
    const char *id;            /* column type of an integer primary key the database assigns */
    const char *day[2];        /* the UTC day 'YYYY-MM-DD' of an expression (ms since the
                                * epoch) is day[0] expression day[1] */
};

/* The statement query both backends run, for payee's rows in period ("YYYY-MM",
 * "YYYY-MM-DD", NULL: all time): its SQL into q with the backend's placeholders ph ("?" or
 * "$1" ...; parameters: payee, from, to) and the period's bounds into from and to. 0, or
 * CMX_EINVAL with a message in err for a malformed period. */
int cmx_ledger_statement_query(const char *period, const char *const ph[3], char *q, size_t q_cap,
                               char from[24], char to[24], char *err, size_t err_cap);

/* The usage query both backends run: rows in period grouped by by ("model", "cloud",
 * "provider", "day", "tenant", "key_id"; NULL: totals), with dialect d and placeholders ph
 * (parameters: from, to). 0, or CMX_EINVAL with a message in err for a malformed period or
 * another by. */
int cmx_ledger_usage_query(const char *period, const char *by, const struct cmx_ledger_dialect *d,
                           const char *const ph[2], char *q, size_t q_cap, char from[24],
                           char to[24], char *err, size_t err_cap);

/* Ids of the ledger_dims and ledger_terms rows a store has read or made, by key (made
 * once per distinct value, then found here). An id made by a transaction that rolled back
 * is gone with it: the store clears the table whenever it rolls back. */
struct cmx_ledger_id_ent {
    char *key; /* malloc'd, len bytes; NULL: empty slot */
    size_t len;
    uint64_t hash;
    int64_t id;
};
struct cmx_ledger_ids {
    struct cmx_ledger_id_ent *e; /* open addressing, cap a power of two (0: none yet) */
    size_t n, cap;
    size_t last; /* slot of the last key found or added */
};

/* The key of r's dimensions (model ... agreements, each NUL-ended): the record's own bytes
 * (r made by cmx_ledger_rec_new), *len set to their length; nothing is copied. */
static inline const char *cmx_ledger_dim_key(const struct cmx_ledger_rec *r, size_t *len)
{
    *len = r->dims_len;
    return r->model;
}

/* The key of accrual a's term (agreement, payee, currency ended by 0x1f, then term, rate and
 * cap as bytes) into buf; returns its length. cap: at least CMX_LEDGER_KEY. */
#define CMX_LEDGER_KEY (4 * CMX_LEDGER_NAME)
size_t cmx_ledger_term_key(const struct cmx_ledger_accrual *a, char *buf, size_t cap);

/* The id stored for key, or -1 (remembers where it was found: the next lookup tries it first). */
int64_t cmx_ledger_ids_find(struct cmx_ledger_ids *t, const char *key, size_t len);

/* Remembers id for key (not present yet). 0 or CMX_ENOMEM. */
int cmx_ledger_ids_add(struct cmx_ledger_ids *t, const char *key, size_t len, int64_t id);

/* Forgets every id (and frees the table). */
void cmx_ledger_ids_clear(struct cmx_ledger_ids *t);

/* The backend for url ("sqlite://PATH", "postgres://...", "postgresql://..."), or NULL. */
const struct cmx_ledger_store_ops *cmx_ledger_store_for(const char *url);

/* Opens url with its backend. */
int cmx_ledger_store_open(const char *url, struct cmx_ledger_store **out, char *err,
                          size_t err_cap);

/* The migrations, as SQL common to both backends, applied in order inside one
 * transaction each; version i+1 is migrations[i]. */
extern const char *const cmx_ledger_migrations[];
extern const size_t cmx_ledger_n_migrations;

/* Migration i as the backend of dialect d runs it, its substitutions made (malloc'd; NULL on
 * allocation failure). */
char *cmx_ledger_migration_sql(size_t i, const struct cmx_ledger_dialect *d);

#endif
