/* The ledger on SQLite (the embedded default): WAL, one writer transaction per batch taken
 * with BEGIN IMMEDIATE, so that gateways sharing one file serialize their cap arithmetic. */
#include "ledger/store.h"
#include "keys/registry.h"
#include "core/err.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* write_one: the batch touches more caps than the cache holds */
#define CMX_EAGAIN_BATCH 1

/* Records (and accrual rows) per multi-row INSERT: one statement execution per GROUP rows
 * instead of per row costs well under half as much per record (the per-statement work -
 * VDBE setup, halt, reset - dominates a single narrow insert). */
#define GROUP 16

enum {
    INS_USAGE,
    INS_CAP,
    SEL_CAP,
    UPD_CAP,
    INS_ACC,
    INS_DIM,
    SEL_DIM,
    INS_TERM,
    SEL_TERM,
    INS_USAGE_N,
    INS_ACC_N,
    N_STMT
};

#define USAGE_COLS 16
#define ACC_COLS   7

/* INS_USAGE_N and INS_ACC_N are INS_USAGE and INS_ACC with GROUP value rows (made at open). */
static const char *const sql[INS_USAGE_N] = {
    "INSERT INTO ledger_usage (record_id, request_id, ts_ms, dim_id, prompt_tokens,"
    " completion_tokens, cached_tokens, reasoning_tokens, estimated, stream, status, latency_ms,"
    " revenue_micros, cost_micros, tenant, key_id)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (record_id) DO NOTHING",
    "INSERT INTO caps (agreement, payee, term, cap_micros, accrued_micros) VALUES (?,?,?,?,0)"
    " ON CONFLICT (agreement, payee, term) DO UPDATE SET cap_micros = excluded.cap_micros"
    " WHERE caps.cap_micros <> excluded.cap_micros",
    "SELECT accrued_micros FROM caps WHERE agreement = ? AND payee = ? AND term = ?",
    "UPDATE caps SET accrued_micros = accrued_micros + ? WHERE agreement = ? AND payee = ?"
    " AND term = ?",
    "INSERT INTO ledger_accruals (term_id, ts_ms, record_id, base_micros, amount_micros,"
    " accrued_micros, over_cap_micros) VALUES (?,?,?,?,?,?,?)",
    "INSERT INTO ledger_dims (model, product, provider, cloud, region, agreements)"
    " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
    "SELECT id FROM ledger_dims WHERE model = ? AND product = ? AND provider = ? AND cloud = ?"
    " AND region = ? AND agreements = ?",
    "INSERT INTO ledger_terms (agreement, payee, term, rate_ppm, currency, cap_micros)"
    " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
    "SELECT id FROM ledger_terms WHERE agreement = ? AND payee = ? AND term = ? AND rate_ppm = ?"
    " AND currency = ? AND cap_micros = ?",
};

static const struct cmx_ledger_dialect dialect = {
    .without_rowid = " WITHOUT ROWID",
    .id = "INTEGER PRIMARY KEY",
    .day = {"strftime('%Y-%m-%d', (", ") / 1000, 'unixepoch')"},
};

struct sqlite_store {
    struct cmx_ledger_store base;
    sqlite3 *db;
    sqlite3_stmt *st[N_STMT];
    int sync;                    /* -1 unknown, 0 NORMAL, 1 FULL */
    struct cmx_ledger_ids dims;  /* ledger_dims ids seen */
    struct cmx_ledger_ids terms; /* ledger_terms ids seen */
};

static void set_err(char *err, size_t cap, const char *what, sqlite3 *db)
{
    snprintf(err, cap, "ledger (sqlite): %s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

static int exec(sqlite3 *db, const char *q)
{
    return sqlite3_exec(db, q, NULL, NULL, NULL) == SQLITE_OK ? 0 : CMX_EIO;
}

/* Runs migration v with this backend's substitutions. */
static int run_migration(sqlite3 *db, size_t v)
{
    char *q = cmx_ledger_migration_sql(v, &dialect);
    int rc = q != NULL ? exec(db, q) : CMX_ENOMEM;
    free(q);
    return rc;
}

static int migrate(sqlite3 *db, char *err, size_t cap)
{
    if (exec(db, "CREATE TABLE IF NOT EXISTS ledger_schema (version INTEGER NOT NULL)") != 0 ||
        exec(db, "BEGIN IMMEDIATE") != 0) {
        set_err(err, cap, "migrations", db);
        return CMX_EIO;
    }
    sqlite3_stmt *s = NULL;
    int64_t have = 0;
    if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM ledger_schema", -1, &s,
                           NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        have = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    for (size_t v = (size_t)have; v < cmx_ledger_n_migrations; v++) {
        char ins[96];
        snprintf(ins, sizeof(ins), "INSERT INTO ledger_schema (version) VALUES (%zu)", v + 1);
        if (run_migration(db, v) != 0 || exec(db, ins) != 0) {
            set_err(err, cap, "migration", db);
            exec(db, "ROLLBACK");
            return CMX_EIO;
        }
    }
    if (exec(db, "COMMIT") != 0) {
        set_err(err, cap, "migrations", db);
        exec(db, "ROLLBACK");
        return CMX_EIO;
    }
    return 0;
}

/* A single-row "INSERT ... VALUES (?,...)[ suffix]" turned into GROUP value rows (malloc'd),
 * or NULL. */
static char *multi_row(const char *one)
{
    const char *v = strstr(one, " VALUES (");
    const char *close = v != NULL ? strchr(v, ')') : NULL;
    if (close == NULL)
        return NULL;
    size_t head = (size_t)(v - one) + 8, tuple = (size_t)(close + 1 - (v + 8));
    size_t tail = strlen(close + 1);
    char *q = malloc(head + GROUP * (tuple + 1) + tail + 1), *o = q;
    if (q == NULL)
        return NULL;
    memcpy(o, one, head);
    o += head;
    for (int i = 0; i < GROUP; i++) {
        if (i > 0)
            *o++ = ',';
        memcpy(o, v + 8, tuple);
        o += tuple;
    }
    memcpy(o, close + 1, tail + 1);
    return q;
}

static void sq_close(struct cmx_ledger_store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    for (int i = 0; i < N_STMT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    cmx_ledger_ids_clear(&s->dims);
    cmx_ledger_ids_clear(&s->terms);
    free(s);
}

static bool sq_exists(const char *url, char *err, size_t cap)
{
    const char *path = url + strlen("sqlite://");
    if (access(path, F_OK) == 0)
        return true;
    snprintf(err, cap, "no ledger at %s (a gateway creates it when it starts)", path);
    return false;
}

static int sq_open(const char *url, struct cmx_ledger_store **out, char *err, size_t cap)
{
    const char *path = url + strlen("sqlite://");
    struct sqlite_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CMX_ENOMEM;
    err[0] = '\0';
    s->base.ops = &cmx_ledger_sqlite_ops;
    s->sync = -1;
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        set_err(err, cap, "open", s->db);
        sq_close(&s->base);
        return CMX_EIO;
    }
    sqlite3_busy_timeout(s->db, 30000);
    /* WAL: readers (reports) never block the writer; rarer checkpoints keep batches cheap.
     * Appends touch only the b-trees' right edges: a 2 MiB page cache writes as fast as
     * 32 MiB did (measured) and keeps the gateway's RSS ~30 MiB lower */
    if (exec(s->db, "PRAGMA journal_mode=WAL") != 0 ||
        exec(s->db, "PRAGMA cache_size=-2048") != 0 ||
        exec(s->db, "PRAGMA wal_autocheckpoint=4000") != 0 || migrate(s->db, err, cap) != 0) {
        if (err[0] == '\0')
            set_err(err, cap, "open", s->db);
        sq_close(&s->base);
        return CMX_EIO;
    }
    for (int i = 0; i < N_STMT; i++) {
        char *q = i == INS_USAGE_N ? multi_row(sql[INS_USAGE])
                  : i == INS_ACC_N ? multi_row(sql[INS_ACC])
                                   : NULL;
        if (i >= INS_USAGE_N && q == NULL) {
            set_err(err, cap, "prepare", NULL);
            sq_close(&s->base);
            return CMX_ENOMEM;
        }
        int prc = sqlite3_prepare_v2(s->db, q != NULL ? q : sql[i], -1, &s->st[i], NULL);
        free(q);
        if (prc != SQLITE_OK) {
            set_err(err, cap, "prepare", s->db);
            sq_close(&s->base);
            return CMX_EIO;
        }
    }
    *out = &s->base;
    return 0;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

/* Runs a prepared statement that returns no row (or one int64 into *row). */
static int step(sqlite3_stmt *st, int64_t *row)
{
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW && row != NULL)
        *row = sqlite3_column_int64(st, 0);
    sqlite3_reset(st); /* every parameter is bound again before the next step */
    return r == SQLITE_DONE || r == SQLITE_ROW ? 0 : CMX_EIO;
}

/* write_group: a record of the group was already stored (a replay): redo row by row */
#define CMX_EDUP_GROUP 2

/* Rolls the transaction back; ids made inside it are gone with it, so none is kept. */
static void rollback(struct sqlite_store *s)
{
    exec(s->db, "ROLLBACK");
    cmx_ledger_ids_clear(&s->dims);
    cmx_ledger_ids_clear(&s->terms);
}

/* The id in table ids of the row that statements ins / sel make / find with n values (v[i],
 * or the integer iv[i] where v[i] is NULL), keyed by key: from memory after the first time.
 * -1 on failure. */
static int64_t row_id(struct sqlite_store *s, struct cmx_ledger_ids *ids, const char *key,
                      size_t len, int ins, int sel, const char *const *v, const int64_t *iv, int n)
{
    int64_t id = cmx_ledger_ids_find(ids, key, len);
    if (id >= 0)
        return id;
    sqlite3_stmt *st[2] = {s->st[ins], s->st[sel]};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < n; i++)
            if (v[i] != NULL)
                bind_text(st[k], i + 1, v[i]);
            else
                sqlite3_bind_int64(st[k], i + 1, iv[i]);
        if (step(st[k], k == 1 ? &id : NULL) != 0)
            return -1;
    }
    if (id < 0 || cmx_ledger_ids_add(ids, key, len, id) != 0)
        return -1;
    return id;
}

/* The ledger_dims id of r's model, product, provider, cloud, region and agreements. */
static int64_t dim_id(struct sqlite_store *s, const struct cmx_ledger_rec *r)
{
    size_t len;
    const char *key = cmx_ledger_dim_key(r, &len);
    const char *v[6] = {r->model, r->product, r->provider, r->cloud, r->region, r->agreements};
    return row_id(s, &s->dims, key, len, INS_DIM, SEL_DIM, v, NULL, 6);
}

/* The ledger_terms id of accrual a's term (uncapped: cap -1). */
static int64_t term_id(struct sqlite_store *s, const struct cmx_ledger_accrual *a)
{
    char key[CMX_LEDGER_KEY];
    size_t len = cmx_ledger_term_key(a, key, sizeof(key));
    const char *v[6] = {a->agreement, a->payee, NULL, NULL, a->currency, NULL};
    const int64_t iv[6] = {0, 0, a->term, a->rate_ppm, 0, a->has_cap ? a->cap_micros : -1};
    return row_id(s, &s->terms, key, len, INS_TERM, SEL_TERM, v, iv, 6);
}

/* Binds r's usage row (dimensions dim) as row k of u (parameters k*USAGE_COLS+1 ...). */
static void bind_usage(sqlite3_stmt *u, int k, const struct cmx_ledger_rec *r, int64_t dim)
{
    int at = k * USAGE_COLS;
    bind_text(u, at + 1, r->record_id);
    bind_text(u, at + 2, r->request_id);
    sqlite3_bind_int64(u, at + 3, r->ts_ms);
    sqlite3_bind_int64(u, at + 4, dim);
    sqlite3_bind_int64(u, at + 5, r->prompt_tokens);
    sqlite3_bind_int64(u, at + 6, r->completion_tokens);
    sqlite3_bind_int64(u, at + 7, r->cached_tokens);
    sqlite3_bind_int64(u, at + 8, r->reasoning_tokens);
    sqlite3_bind_int(u, at + 9, r->estimated);
    sqlite3_bind_int(u, at + 10, r->stream);
    sqlite3_bind_int(u, at + 11, r->status);
    sqlite3_bind_int64(u, at + 12, r->latency_ms);
    sqlite3_bind_int64(u, at + 13, r->revenue_micros);
    sqlite3_bind_int64(u, at + 14, r->cost_micros);
    if (r->tenant[0] != '\0')
        bind_text(u, at + 15, r->tenant);
    else
        sqlite3_bind_null(u, at + 15);
    if (r->key_id[0] != '\0')
        bind_text(u, at + 16, r->key_id);
    else
        sqlite3_bind_null(u, at + 16);
}

/* One accrual row to insert: the term of a record and what it accrues after its cap. */
struct acc_row {
    const struct cmx_ledger_rec *r;
    const struct cmx_ledger_accrual *a;
    int64_t term_id; /* ledger_terms id of a's term */
    int64_t accrued, over;
};

/* Splits a's amount at its cap: the cap's total is read (and its row created) once per
 * transaction, then kept in caps. The caller made room in caps. 0 or CMX_EIO. */
static int accrue(struct sqlite_store *s, struct cmx_ledger_cap_cache *caps,
                  const struct cmx_ledger_rec *r, const struct cmx_ledger_accrual *a,
                  struct acc_row *out)
{
    int64_t prev = 0;
    size_t ci = (size_t)-1;
    if (a->has_cap) {
        ci = cmx_ledger_cap_find(caps, a);
        if (ci == (size_t)-1) {
            sqlite3_stmt *c = s->st[INS_CAP];
            bind_text(c, 1, a->agreement);
            bind_text(c, 2, a->payee);
            sqlite3_bind_int(c, 3, a->term);
            sqlite3_bind_int64(c, 4, a->cap_micros);
            if (step(c, NULL) != 0)
                return CMX_EIO;
            c = s->st[SEL_CAP];
            bind_text(c, 1, a->agreement);
            bind_text(c, 2, a->payee);
            sqlite3_bind_int(c, 3, a->term);
            if (step(c, &prev) != 0)
                return CMX_EIO;
            ci = caps->n++;
            caps->e[ci].key = a;
            caps->e[ci].accrued = prev;
            caps->e[ci].added = 0;
        }
        prev = caps->e[ci].accrued;
    }
    out->r = r;
    out->a = a;
    if ((out->term_id = term_id(s, a)) < 0)
        return CMX_EIO;
    cmx_ledger_cap_split(a->amount_micros, a->has_cap, a->cap_micros, prev, &out->accrued,
                         &out->over);
    if (a->has_cap) {
        caps->e[ci].accrued += out->accrued;
        caps->e[ci].added += out->accrued;
    }
    return 0;
}

/* Binds an accrual row as row k of c (parameters k*ACC_COLS+1 ...). */
static void bind_acc(sqlite3_stmt *c, int k, const struct acc_row *x)
{
    int at = k * ACC_COLS;
    sqlite3_bind_int64(c, at + 1, x->term_id);
    sqlite3_bind_int64(c, at + 2, x->r->ts_ms);
    bind_text(c, at + 3, x->r->record_id);
    sqlite3_bind_int64(c, at + 4, x->r->revenue_micros);
    sqlite3_bind_int64(c, at + 5, x->a->amount_micros);
    sqlite3_bind_int64(c, at + 6, x->accrued);
    sqlite3_bind_int64(c, at + 7, x->over);
}

/* Inserts n accrual rows: GROUP at a time, the rest one by one. */
static int insert_accs(struct sqlite_store *s, const struct acc_row *x, size_t n)
{
    size_t i = 0;
    for (; n - i >= GROUP; i += GROUP) {
        for (int k = 0; k < GROUP; k++)
            bind_acc(s->st[INS_ACC_N], k, &x[i + (size_t)k]);
        if (step(s->st[INS_ACC_N], NULL) != 0)
            return CMX_EIO;
    }
    for (; i < n; i++) {
        bind_acc(s->st[INS_ACC], 0, &x[i]);
        if (step(s->st[INS_ACC], NULL) != 0)
            return CMX_EIO;
    }
    return 0;
}

/* Writes one record and its accruals. A record already stored (a replay) is skipped with
 * its accruals. 0, CMX_EIO, or CMX_EAGAIN_BATCH when the caps cache has no room left. */
static int write_one(struct sqlite_store *s, const struct cmx_ledger_rec *r,
                     struct cmx_ledger_cap_cache *caps)
{
    /* room for every cap of the record before anything of it is written */
    if (caps->n + r->n_acc > CMX_LEDGER_CAP_CACHE)
        return CMX_EAGAIN_BATCH;
    int64_t dim = dim_id(s, r);
    if (dim < 0)
        return CMX_EIO;
    bind_usage(s->st[INS_USAGE], 0, r, dim);
    if (step(s->st[INS_USAGE], NULL) != 0)
        return CMX_EIO;
    if (sqlite3_changes(s->db) == 0)
        return 0; /* already recorded (a replay): its accruals are too */
    struct acc_row x[CMX_LEDGER_MAX_SHARES];
    for (size_t i = 0; i < r->n_acc && i < CMX_LEDGER_MAX_SHARES; i++)
        if (accrue(s, caps, r, &r->acc[i], &x[i]) != 0)
            return CMX_EIO;
    return insert_accs(s, x, r->n_acc < CMX_LEDGER_MAX_SHARES ? r->n_acc : CMX_LEDGER_MAX_SHARES);
}

/* Writes GROUP records with one multi-row INSERT, then their accruals in record order (the
 * same cap arithmetic as row by row). 0, CMX_EIO, CMX_EAGAIN_BATCH (no room for their caps:
 * nothing written), or CMX_EDUP_GROUP when one of them was already stored (the caller rolls
 * back and writes row by row, which skips it). */
static int write_group(struct sqlite_store *s, struct cmx_ledger_rec *const *recs,
                       struct cmx_ledger_cap_cache *caps, struct acc_row *x)
{
    size_t nx = 0;
    for (int i = 0; i < GROUP; i++)
        nx += recs[i]->n_acc;
    if (caps->n + nx > CMX_LEDGER_CAP_CACHE)
        return CMX_EAGAIN_BATCH;
    int64_t dim[GROUP];
    for (int i = 0; i < GROUP; i++)
        if ((dim[i] = dim_id(s, recs[i])) < 0)
            return CMX_EIO;
    sqlite3_stmt *u = s->st[INS_USAGE_N];
    for (int i = 0; i < GROUP; i++)
        bind_usage(u, i, recs[i], dim[i]);
    if (step(u, NULL) != 0)
        return CMX_EIO;
    if (sqlite3_changes(s->db) != GROUP)
        return CMX_EDUP_GROUP;
    nx = 0;
    for (int i = 0; i < GROUP; i++)
        for (size_t k = 0; k < recs[i]->n_acc; k++)
            if (accrue(s, caps, recs[i], &recs[i]->acc[k], &x[nx++]) != 0)
                return CMX_EIO;
    return insert_accs(s, x, nx);
}

/* Writes the totals of the caps a transaction touched. */
static int flush_caps(struct sqlite_store *s, struct cmx_ledger_cap_cache *caps)
{
    for (size_t i = 0; i < caps->n; i++) {
        if (caps->e[i].added == 0)
            continue;
        const struct cmx_ledger_accrual *a = caps->e[i].key;
        sqlite3_stmt *c = s->st[UPD_CAP];
        sqlite3_bind_int64(c, 1, caps->e[i].added);
        bind_text(c, 2, a->agreement);
        bind_text(c, 3, a->payee);
        sqlite3_bind_int(c, 4, a->term);
        if (step(c, NULL) != 0)
            return CMX_EIO;
    }
    return 0;
}

/* One transaction over recs (more when the caps cache fills). grouped: GROUP records per
 * INSERT where possible. */
static int write_batch(struct sqlite_store *s, struct cmx_ledger_rec *const *recs, size_t n,
                       bool grouped)
{
    if (exec(s->db, "BEGIN IMMEDIATE") != 0)
        return CMX_EIO;
    struct cmx_ledger_cap_cache caps;
    struct acc_row x[CMX_LEDGER_CAP_CACHE];
    caps.n = 0;
    size_t done = 0;
    int rc = 0;
    while (done < n) {
        if (grouped && n - done >= GROUP &&
            (rc = write_group(s, recs + done, &caps, x)) != CMX_EAGAIN_BATCH) {
            if (rc != 0)
                break;
            done += GROUP;
            continue;
        }
        if ((rc = write_one(s, recs[done], &caps)) != 0)
            break;
        done++;
    }
    if (rc == CMX_EDUP_GROUP) {
        rollback(s);
        return write_batch(s, recs, n, false);
    }
    if (rc == CMX_EAGAIN_BATCH && done > 0) {
        /* more distinct caps than the cache holds: commit what is done, then the rest */
        rc = flush_caps(s, &caps);
        if (rc == 0 && exec(s->db, "COMMIT") == 0)
            return write_batch(s, recs + done, n - done, grouped);
        rollback(s);
        return CMX_EIO;
    }
    if (rc != 0 || flush_caps(s, &caps) != 0) {
        rollback(s);
        return CMX_EIO;
    }
    if (exec(s->db, "COMMIT") != 0) {
        rollback(s);
        return CMX_EIO;
    }
    return 0;
}

static int sq_write(struct cmx_ledger_store *base, struct cmx_ledger_rec *const *recs, size_t n,
                    bool sync)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    if (s->sync != (int)sync) {
        if (exec(s->db, sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") != 0)
            return CMX_EIO;
        s->sync = sync;
    }
    return write_batch(s, recs, n, true);
}

static int64_t col_opt(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, i);
}

static void col_text(sqlite3_stmt *st, int i, char *dst, size_t cap)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

/* Runs the SELECT q with text parameters params[0..n_params) and collects each result row
 * into out (malloc'd rows of size bytes, zeroed, then filled by fill: 0, or CMX_ENOMEM).
 * 0, or CMX_EIO with what was collected left in out for the caller to release. */
static int select_rows(struct sqlite_store *s, const char *q, const char *const *params,
                       int n_params, size_t size, int (*fill)(sqlite3_stmt *st, void *row),
                       struct cmx_ledger_rows *out)
{
    sqlite3_stmt *st;
    out->rows = NULL;
    out->n = 0;
    if (sqlite3_prepare_v2(s->db, q, -1, &st, NULL) != SQLITE_OK)
        return CMX_EIO;
    for (int i = 0; i < n_params; i++)
        bind_text(st, i + 1, params[i]);
    size_t rcap = 0;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        void *nr = cmx_ledger_rows_grow(out->rows, out->n, &rcap, size);
        if (nr == NULL) {
            r = SQLITE_NOMEM;
            break;
        }
        out->rows = nr;
        void *row = (char *)out->rows + out->n++ * size;
        memset(row, 0, size);
        if (fill(st, row) != 0) {
            r = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_finalize(st);
    return r == SQLITE_DONE ? 0 : CMX_EIO;
}

/* Frees plain rows (no pointers inside) and empties out. */
static void rows_free(struct cmx_ledger_rows *out)
{
    free(out->rows);
    out->rows = NULL;
    out->n = 0;
}

static int fill_stmt_row(sqlite3_stmt *st, void *row)
{
    struct cmx_ledger_stmt_row *w = row;
    col_text(st, 0, w->agreement, sizeof(w->agreement));
    w->term = sqlite3_column_int(st, 1);
    w->rate_ppm = sqlite3_column_int64(st, 2);
    col_text(st, 3, w->currency, sizeof(w->currency));
    w->base_micros = sqlite3_column_int64(st, 4);
    w->amount_micros = sqlite3_column_int64(st, 5);
    w->accrued_micros = sqlite3_column_int64(st, 6);
    w->over_cap_micros = sqlite3_column_int64(st, 7);
    w->has_cap = sqlite3_column_type(st, 8) != SQLITE_NULL;
    w->cap_micros = sqlite3_column_int64(st, 8);
    w->requests = sqlite3_column_int64(st, 9);
    w->cap_remaining_micros = cmx_ledger_cap_left(w->cap_micros, sqlite3_column_int64(st, 10));
    return 0;
}

static int sq_statement(struct cmx_ledger_store *base, const char *payee, const char *period,
                        struct cmx_ledger_rows *out, char *err, size_t cap)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    static const char *const ph[3] = {"?", "?", "?"};
    char q[1024], from[24], to[24];
    out->rows = NULL;
    out->n = 0;
    if (cmx_ledger_statement_query(period, ph, q, sizeof(q), from, to, err, cap) != 0)
        return CMX_EINVAL;
    const char *params[3] = {payee, from, to};
    if (select_rows(s, q, params, 3, sizeof(struct cmx_ledger_stmt_row), fill_stmt_row, out) != 0) {
        rows_free(out);
        set_err(err, cap, "statement", s->db);
        return CMX_EIO;
    }
    return 0;
}

static int fill_usage_row(sqlite3_stmt *st, void *row)
{
    struct cmx_ledger_usage_row *w = row;
    col_text(st, 0, w->key, sizeof(w->key));
    w->requests = sqlite3_column_int64(st, 1);
    w->prompt_tokens = sqlite3_column_int64(st, 2);
    w->completion_tokens = sqlite3_column_int64(st, 3);
    w->cached_tokens = sqlite3_column_int64(st, 4);
    w->reasoning_tokens = sqlite3_column_int64(st, 5);
    w->estimated = sqlite3_column_int64(st, 6);
    w->revenue_micros = sqlite3_column_int64(st, 7);
    w->cost_micros = sqlite3_column_int64(st, 8);
    return 0;
}

static int sq_usage(struct cmx_ledger_store *base, const char *period, const char *by,
                    struct cmx_ledger_rows *out, char *err, size_t cap)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    static const char *const ph[2] = {"?", "?"};
    char q[1024], from[24], to[24];
    out->rows = NULL;
    out->n = 0;
    if (cmx_ledger_usage_query(period, by, &dialect, ph, q, sizeof(q), from, to, err, cap) != 0)
        return CMX_EINVAL;
    const char *params[2] = {from, to};
    if (select_rows(s, q, params, 2, sizeof(struct cmx_ledger_usage_row), fill_usage_row, out) !=
        0) {
        rows_free(out);
        set_err(err, cap, "usage", s->db);
        return CMX_EIO;
    }
    return 0;
}

static int64_t sq_count(struct cmx_ledger_store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st;
    int64_t n = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT COUNT(*) FROM ledger_usage", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* ---- keys and tenants (migration 2) ---------------------------------------------------- */

static void bind_opt(sqlite3_stmt *st, int i, int64_t v)
{
    if (v >= 0)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

/* Runs one write statement inside BEGIN IMMEDIATE with the change stamp bumped. *changes:
 * rows the statement changed. */
static int admin_write(struct sqlite_store *s, sqlite3_stmt *st, int *changes)
{
    if (exec(s->db, "BEGIN IMMEDIATE") != 0) {
        sqlite3_finalize(st);
        return CMX_EIO;
    }
    int r = sqlite3_step(st);
    int ch = sqlite3_changes(s->db);
    bool unique = r == SQLITE_CONSTRAINT;
    sqlite3_finalize(st);
    if (r != SQLITE_DONE ||
        (ch > 0 && exec(s->db, "UPDATE admin_changes SET seq = seq + 1 WHERE id = 1") != 0) ||
        exec(s->db, "COMMIT") != 0) {
        exec(s->db, "ROLLBACK");
        return unique ? CMX_EINVAL : CMX_EIO;
    }
    if (changes != NULL)
        *changes = ch;
    return 0;
}

static int sq_key_create(struct cmx_ledger_store *base, const struct cmx_key_rec *k, int64_t now_ms)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO keys (id, hash, name, tenant, created_ms, expires_ms,"
                           " revoked_ms, rpm, tpm, budget_micros, updated_ms)"
                           " VALUES (?,?,?,?,?,?,NULL,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return CMX_EIO;
    bind_text(st, 1, k->id);
    bind_text(st, 2, k->hash);
    bind_text(st, 3, k->name);
    bind_text(st, 4, k->tenant);
    sqlite3_bind_int64(st, 5, k->created_ms);
    bind_opt(st, 6, k->expires_ms);
    sqlite3_bind_int(st, 7, k->rpm);
    sqlite3_bind_int(st, 8, k->tpm);
    bind_opt(st, 9, k->budget_micros);
    sqlite3_bind_int64(st, 10, now_ms);
    return admin_write(s, st, NULL);
}

static int sq_key_revoke(struct cmx_ledger_store *base, const char *id, int64_t now_ms,
                         bool *was_revoked)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st;
    int64_t revoked = -2;
    *was_revoked = false;
    if (sqlite3_prepare_v2(s->db, "SELECT revoked_ms FROM keys WHERE id = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return CMX_EIO;
    bind_text(st, 1, id);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        revoked = col_opt(st, 0);
    sqlite3_finalize(st);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return CMX_EIO;
    if (revoked == -2)
        return CMX_ENOTFOUND;
    if (revoked >= 0) {
        *was_revoked = true;
        return 0;
    }
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE keys SET revoked_ms = ?, updated_ms = ? WHERE id = ?"
                           " AND revoked_ms IS NULL",
                           -1, &st, NULL) != SQLITE_OK)
        return CMX_EIO;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, now_ms);
    bind_text(st, 3, id);
    int ch = 0;
    int rc = admin_write(s, st, &ch);
    if (rc == 0 && ch == 0)
        *was_revoked = true; /* revoked meanwhile by someone else */
    return rc;
}

static int fill_key_row(sqlite3_stmt *st, void *row)
{
    struct cmx_key_rec *k = row;
    col_text(st, 0, k->id, sizeof(k->id));
    col_text(st, 1, k->hash, sizeof(k->hash));
    col_text(st, 2, k->name, sizeof(k->name));
    col_text(st, 3, k->tenant, sizeof(k->tenant));
    k->created_ms = sqlite3_column_int64(st, 4);
    k->expires_ms = col_opt(st, 5);
    k->revoked_ms = col_opt(st, 6);
    k->rpm = sqlite3_column_int(st, 7);
    k->tpm = sqlite3_column_int(st, 8);
    k->budget_micros = col_opt(st, 9);
    return 0;
}

static int sq_keys_load(struct cmx_ledger_store *base, struct cmx_ledger_rows *out)
{
    if (select_rows((struct sqlite_store *)base,
                    "SELECT id, hash, name, tenant, created_ms, expires_ms, revoked_ms,"
                    " rpm, tpm, budget_micros FROM keys ORDER BY created_ms, id",
                    NULL, 0, sizeof(struct cmx_key_rec), fill_key_row, out) != 0) {
        rows_free(out);
        return CMX_EIO;
    }
    return 0;
}

static int64_t sq_stamp(struct cmx_ledger_store *base)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT seq FROM admin_changes WHERE id = 1", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int sq_tenant_put(struct cmx_ledger_store *base, const char *name, const char *definition,
                         int64_t now_ms)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO tenants (name, definition, updated_ms, deleted_ms)"
                           " VALUES (?,?,?,NULL) ON CONFLICT (name) DO UPDATE SET"
                           " definition = excluded.definition, updated_ms = excluded.updated_ms,"
                           " deleted_ms = NULL",
                           -1, &st, NULL) != SQLITE_OK)
        return CMX_EIO;
    bind_text(st, 1, name);
    bind_text(st, 2, definition);
    sqlite3_bind_int64(st, 3, now_ms);
    return admin_write(s, st, NULL);
}

static int sq_tenant_delete(struct cmx_ledger_store *base, const char *name, int64_t now_ms)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE tenants SET deleted_ms = ?, updated_ms = ? WHERE name = ?"
                           " AND deleted_ms IS NULL",
                           -1, &st, NULL) != SQLITE_OK)
        return CMX_EIO;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int64(st, 2, now_ms);
    bind_text(st, 3, name);
    int ch = 0;
    int rc = admin_write(s, st, &ch);
    return rc != 0 ? rc : ch == 0 ? CMX_ENOTFOUND : 0;
}

static int fill_tenant_row(sqlite3_stmt *st, void *row)
{
    struct cmx_ledger_tenant_row *t = row;
    col_text(st, 0, t->name, sizeof(t->name));
    const unsigned char *d = sqlite3_column_text(st, 1);
    t->definition = strdup(d ? (const char *)d : "{}");
    t->updated_ms = sqlite3_column_int64(st, 2);
    return t->definition != NULL ? 0 : CMX_ENOMEM;
}

static int sq_tenants_load(struct cmx_ledger_store *base, struct cmx_ledger_rows *out)
{
    if (select_rows((struct sqlite_store *)base,
                    "SELECT name, definition, updated_ms FROM tenants"
                    " WHERE deleted_ms IS NULL ORDER BY name",
                    NULL, 0, sizeof(struct cmx_ledger_tenant_row), fill_tenant_row, out) != 0) {
        cmx_ledger_tenant_rows_free(out);
        return CMX_EIO;
    }
    return 0;
}

static int sq_spent(struct cmx_ledger_store *base, const char *tenant, const char *key_id,
                    int64_t from_ms, int64_t to_ms, int64_t *sum)
{
    struct sqlite_store *s = (struct sqlite_store *)base;
    sqlite3_stmt *st;
    const char *q = key_id != NULL ? "SELECT COALESCE(SUM(revenue_micros), 0) FROM ledger_usage"
                                     " WHERE key_id = ? AND ts_ms >= ? AND ts_ms < ?"
                                   : "SELECT COALESCE(SUM(revenue_micros), 0) FROM ledger_usage"
                                     " WHERE tenant = ? AND ts_ms >= ? AND ts_ms < ?";
    *sum = 0;
    if (sqlite3_prepare_v2(s->db, q, -1, &st, NULL) != SQLITE_OK)
        return CMX_EIO;
    bind_text(st, 1, key_id != NULL ? key_id : tenant);
    sqlite3_bind_int64(st, 2, from_ms);
    sqlite3_bind_int64(st, 3, to_ms);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW)
        *sum = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return r == SQLITE_ROW ? 0 : CMX_EIO;
}

const struct cmx_ledger_store_ops cmx_ledger_sqlite_ops = {
    .scheme = "sqlite",
    .open = sq_open,
    .exists = sq_exists,
    .write = sq_write,
    .statement = sq_statement,
    .usage = sq_usage,
    .count = sq_count,
    .close = sq_close,
    .key_create = sq_key_create,
    .key_revoke = sq_key_revoke,
    .keys_load = sq_keys_load,
    .stamp = sq_stamp,
    .tenant_put = sq_tenant_put,
    .tenant_delete = sq_tenant_delete,
    .tenants_load = sq_tenants_load,
    .spent = sq_spent,
};
