/* The ledger on PostgreSQL (libpq), for fleets of gateways sharing one ledger. The cap of a
 * term is one row of `caps`, read with SELECT ... FOR UPDATE inside the transaction that
 * records the request: the gateways queue on that row lock, so together they never accrue
 * past the cap. A deadlock or serialization failure retries the whole batch. */
#include "ledger/store.h"
#include "keys/registry.h"
#include "core/clock.h"
#include "core/err.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRIES 8
/* write_one: the batch touches more caps than the cache holds */
#define CMX_EAGAIN_BATCH 1

enum { INS_USAGE, INS_CAP, SEL_CAP, UPD_CAP, INS_ACC, N_STMT };

static const char *const sql[N_STMT] = {
    "INSERT INTO usage (record_id, request_id, ts_ms, period, day, model, product, provider, "
    "cloud, region,"
    " agreements, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, estimated,"
    " stream, status, latency_ms, revenue_micros, cost_micros, tenant, key_id)"
    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,"
    "$23)"
    " ON CONFLICT (record_id) DO NOTHING",
    "INSERT INTO caps (agreement, payee, term, cap_micros, accrued_micros) VALUES ($1,$2,$3,$4,0)"
    " ON CONFLICT (agreement, payee, term) DO NOTHING",
    "SELECT accrued_micros FROM caps WHERE agreement = $1 AND payee = $2 AND term = $3"
    " FOR UPDATE",
    "UPDATE caps SET accrued_micros = accrued_micros + $1 WHERE agreement = $2 AND payee = $3"
    " AND term = $4",
    "INSERT INTO accruals (record_id, request_id, ts_ms, period, day, agreement, payee, term, "
    "rate_ppm,"
    " currency, base_micros, amount_micros, accrued_micros, over_cap_micros, cap_micros)"
    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
};
static const int n_params[N_STMT] = {23, 4, 3, 4, 15};
static const char *const names[N_STMT] = {"cmx_ins_usage", "cmx_ins_cap", "cmx_sel_cap",
                                          "cmx_upd_cap", "cmx_ins_acc"};

struct pg_store {
    struct cmx_ledger_store base;
    PGconn *c;
};

/* Integer parameters are sent as text; each gets its own slot. */
struct params {
    const char *v[23];
    char num[23][24];
    int n;
};

static void p_str(struct params *p, const char *s)
{
    p->v[p->n++] = s;
}

static void p_int(struct params *p, int64_t x)
{
    snprintf(p->num[p->n], sizeof(p->num[0]), "%lld", (long long)x);
    p->v[p->n] = p->num[p->n];
    p->n++;
}

static void p_null(struct params *p)
{
    p->v[p->n++] = NULL;
}

/* Executes a simple command; 0 when it succeeded. */
static int cmd(PGconn *c, const char *q)
{
    PGresult *r = PQexec(c, q);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    return ok ? 0 : CMX_EIO;
}

static void pg_close(struct cmx_ledger_store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    PQfinish(s->c);
    free(s);
}

/* Runs migration v with this backend's substitutions. */
static int run_migration(PGconn *c, size_t v, const char *without_rowid)
{
    char *q = cmx_ledger_migration_sql(v, without_rowid);
    int rc = q != NULL ? cmd(c, q) : CMX_ENOMEM;
    free(q);
    return rc;
}

static int migrate(PGconn *c, char *err, size_t cap)
{
    /* one gateway migrates at a time: an advisory lock held by the transaction */
    if (cmd(c, "BEGIN") != 0 || cmd(c, "SELECT pg_advisory_xact_lock(7716021)") != 0 ||
        cmd(c, "CREATE TABLE IF NOT EXISTS ledger_schema (version INTEGER NOT NULL)") != 0)
        goto out_err;
    PGresult *r = PQexec(c, "SELECT COALESCE(MAX(version), 0) FROM ledger_schema");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        goto out_err;
    }
    size_t have = (size_t)strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    for (size_t v = have; v < cmx_ledger_n_migrations; v++) {
        char ins[96];
        snprintf(ins, sizeof(ins), "INSERT INTO ledger_schema (version) VALUES (%zu)", v + 1);
        if (run_migration(c, v, "") != 0 || cmd(c, ins) != 0)
            goto out_err;
    }
    if (cmd(c, "COMMIT") != 0)
        goto out_err;
    return 0;

out_err:
    snprintf(err, cap, "ledger (postgres): migrations: %s", PQerrorMessage(c));
    cmd(c, "ROLLBACK");
    return CMX_EIO;
}

static int pg_open(const char *url, struct cmx_ledger_store **out, char *err, size_t cap)
{
    struct pg_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CMX_ENOMEM;
    s->base.ops = &cmx_ledger_pg_ops;
    s->c = PQconnectdb(url);
    if (PQstatus(s->c) != CONNECTION_OK) {
        /* libpq's message does not quote the password */
        snprintf(err, cap, "ledger (postgres): cannot connect: %s", PQerrorMessage(s->c));
        char *nl = strchr(err, '\n');
        if (nl != NULL)
            *nl = '\0';
        pg_close(&s->base);
        return CMX_EIO;
    }
    cmd(s->c, "SET client_min_messages = warning");
    if (migrate(s->c, err, cap) != 0) {
        pg_close(&s->base);
        return CMX_EIO;
    }
    for (int i = 0; i < N_STMT; i++) {
        PGresult *r = PQprepare(s->c, names[i], sql[i], n_params[i], NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok) {
            snprintf(err, cap, "ledger (postgres): prepare: %s", PQerrorMessage(s->c));
            pg_close(&s->base);
            return CMX_EIO;
        }
    }
    *out = &s->base;
    return 0;
}

/* Runs prepared statement i. Returns the result (to PQclear) or NULL on failure, with
 * *state the SQLSTATE when the server gave one. */
static PGresult *run(struct pg_store *s, int i, struct params *p, char state[6])
{
    PGresult *r = PQexecPrepared(s->c, names[i], p->n, p->v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;
    const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(state, 6, "%s", code ? code : "");
    PQclear(r);
    return NULL;
}

static int write_one(struct pg_store *s, const struct cmx_ledger_rec *r,
                     struct cmx_ledger_cap_cache *caps, char state[6])
{
    /* room for every cap of the record before anything of it is written */
    if (caps->n + r->n_acc > CMX_LEDGER_CAP_CACHE)
        return CMX_EAGAIN_BATCH;
    char day[16], period[8];
    cmx_clock_format_date(r->ts_ms, day, sizeof(day));
    memcpy(period, day, 7);
    period[7] = '\0';
    struct params p = {.n = 0};
    p_str(&p, r->record_id);
    p_str(&p, r->request_id);
    p_int(&p, r->ts_ms);
    p_str(&p, period);
    p_str(&p, day);
    p_str(&p, r->model);
    p_str(&p, r->product);
    p_str(&p, r->provider);
    p_str(&p, r->cloud);
    p_str(&p, r->region);
    p_str(&p, r->agreements);
    p_int(&p, r->prompt_tokens);
    p_int(&p, r->completion_tokens);
    p_int(&p, r->cached_tokens);
    p_int(&p, r->reasoning_tokens);
    p_int(&p, r->estimated);
    p_int(&p, r->stream);
    p_int(&p, r->status);
    p_int(&p, r->latency_ms);
    p_int(&p, r->revenue_micros);
    p_int(&p, r->cost_micros);
    if (r->tenant[0] != '\0')
        p_str(&p, r->tenant);
    else
        p_null(&p);
    if (r->key_id[0] != '\0')
        p_str(&p, r->key_id);
    else
        p_null(&p);
    PGresult *res = run(s, INS_USAGE, &p, state);
    if (res == NULL)
        return CMX_EIO;
    bool inserted = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!inserted)
        return 0; /* already recorded (a replay, or another gateway's spool) */
    for (size_t i = 0; i < r->n_acc; i++) {
        const struct cmx_ledger_accrual *a = &r->acc[i];
        int64_t prev = 0, accrued, over;
        size_t ci = (size_t)-1;
        if (a->has_cap) {
            ci = cmx_ledger_cap_find(caps, a);
            if (ci == (size_t)-1) {
                p.n = 0;
                p_str(&p, a->agreement);
                p_str(&p, a->payee);
                p_int(&p, a->term);
                p_int(&p, a->cap_micros);
                if ((res = run(s, INS_CAP, &p, state)) == NULL)
                    return CMX_EIO;
                PQclear(res);
                p.n = 3; /* the row stays locked until COMMIT */
                if ((res = run(s, SEL_CAP, &p, state)) == NULL)
                    return CMX_EIO;
                if (PQntuples(res) == 1)
                    prev = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
                PQclear(res);
                ci = caps->n++;
                caps->e[ci].key = a;
                caps->e[ci].accrued = prev;
                caps->e[ci].added = 0;
            }
            prev = caps->e[ci].accrued;
        }
        cmx_ledger_cap_split(a->amount_micros, a->has_cap, a->cap_micros, prev, &accrued, &over);
        if (a->has_cap) {
            caps->e[ci].accrued += accrued;
            caps->e[ci].added += accrued;
        }
        p.n = 0;
        p_str(&p, r->record_id);
        p_str(&p, r->request_id);
        p_int(&p, r->ts_ms);
        p_str(&p, period);
        p_str(&p, day);
        p_str(&p, a->agreement);
        p_str(&p, a->payee);
        p_int(&p, a->term);
        p_int(&p, a->rate_ppm);
        p_str(&p, a->currency);
        p_int(&p, r->revenue_micros);
        p_int(&p, a->amount_micros);
        p_int(&p, accrued);
        p_int(&p, over);
        if (a->has_cap)
            p_int(&p, a->cap_micros);
        else
            p_null(&p);
        if ((res = run(s, INS_ACC, &p, state)) == NULL)
            return CMX_EIO;
        PQclear(res);
    }
    return 0;
}

/* Writes the totals of the caps the transaction touched (their rows are locked). */
static int flush_caps(struct pg_store *s, struct cmx_ledger_cap_cache *caps, char state[6])
{
    for (size_t i = 0; i < caps->n; i++) {
        if (caps->e[i].added == 0)
            continue;
        const struct cmx_ledger_accrual *a = caps->e[i].key;
        struct params p = {.n = 0};
        p_int(&p, caps->e[i].added);
        p_str(&p, a->agreement);
        p_str(&p, a->payee);
        p_int(&p, a->term);
        PGresult *res = run(s, UPD_CAP, &p, state);
        if (res == NULL)
            return CMX_EIO;
        PQclear(res);
    }
    return 0;
}

static int pg_write(struct cmx_ledger_store *base, struct cmx_ledger_rec *const *recs, size_t n,
                    bool sync)
{
    struct pg_store *s = (struct pg_store *)base;
    (void)sync; /* synchronous_commit stays on in both modes */
    for (int attempt = 0; attempt < RETRIES; attempt++) {
        char state[6] = "";
        if (PQstatus(s->c) != CONNECTION_OK || cmd(s->c, "BEGIN") != 0)
            return CMX_EIO;
        struct cmx_ledger_cap_cache caps;
        caps.n = 0;
        size_t done = 0;
        int rc = 0;
        while (done < n && (rc = write_one(s, recs[done], &caps, state)) == 0)
            done++;
        if (rc == CMX_EAGAIN_BATCH && done > 0) {
            /* more distinct caps than the cache holds: commit what is done, then the rest */
            if (flush_caps(s, &caps, state) == 0 && cmd(s->c, "COMMIT") == 0)
                return pg_write(base, recs + done, n - done, sync);
            rc = CMX_EIO;
        }
        if (rc == 0 && (rc = flush_caps(s, &caps, state)) == 0 && cmd(s->c, "COMMIT") == 0)
            return 0;
        cmd(s->c, "ROLLBACK");
        if (PQstatus(s->c) != CONNECTION_OK)
            return CMX_EIO;
        /* 40P01 deadlock, 40001 serialization failure: run the batch again */
        if (strcmp(state, "40P01") != 0 && strcmp(state, "40001") != 0)
            return CMX_EIO;
    }
    return CMX_EIO;
}

static int64_t num(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int pg_statement(struct cmx_ledger_store *base, const char *payee, const char *period,
                        struct cmx_ledger_rows *out, char *err, size_t cap)
{
    struct pg_store *s = (struct pg_store *)base;
    char q[768];
    cmx_ledger_statement_sql(q, sizeof(q), "$1", "$2");
    char like[32];
    snprintf(like, sizeof(like), "%s%%", period ? period : "");
    const char *v[2] = {payee, like};
    out->rows = NULL;
    out->n = 0;
    PGresult *r = PQexecParams(s->c, q, 2, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, cap, "ledger (postgres): statement: %s", PQerrorMessage(s->c));
        PQclear(r);
        return CMX_EIO;
    }
    size_t n = (size_t)PQntuples(r);
    struct cmx_ledger_stmt_row *rows = calloc(n ? n : 1, sizeof(*rows));
    if (rows == NULL) {
        PQclear(r);
        return CMX_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct cmx_ledger_stmt_row *w = &rows[i];
        int k = (int)i;
        snprintf(w->agreement, sizeof(w->agreement), "%s", PQgetvalue(r, k, 0));
        w->term = (int)num(r, k, 1);
        w->rate_ppm = num(r, k, 2);
        snprintf(w->currency, sizeof(w->currency), "%s", PQgetvalue(r, k, 3));
        w->base_micros = num(r, k, 4);
        w->amount_micros = num(r, k, 5);
        w->accrued_micros = num(r, k, 6);
        w->over_cap_micros = num(r, k, 7);
        w->has_cap = !PQgetisnull(r, k, 8);
        w->cap_micros = num(r, k, 8);
        w->requests = num(r, k, 9);
        w->cap_remaining_micros = num(r, k, 10);
    }
    PQclear(r);
    out->rows = rows;
    out->n = n;
    return 0;
}

static int pg_usage(struct cmx_ledger_store *base, const char *period, const char *by,
                    struct cmx_ledger_rows *out, char *err, size_t cap)
{
    struct pg_store *s = (struct pg_store *)base;
    char q[768];
    cmx_ledger_usage_sql(q, sizeof(q), by, "$1");
    char like[32];
    snprintf(like, sizeof(like), "%s%%", period ? period : "");
    const char *v[1] = {like};
    out->rows = NULL;
    out->n = 0;
    PGresult *r = PQexecParams(s->c, q, 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, cap, "ledger (postgres): usage: %s", PQerrorMessage(s->c));
        PQclear(r);
        return CMX_EIO;
    }
    size_t n = (size_t)PQntuples(r);
    struct cmx_ledger_usage_row *rows = calloc(n ? n : 1, sizeof(*rows));
    if (rows == NULL) {
        PQclear(r);
        return CMX_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct cmx_ledger_usage_row *w = &rows[i];
        int k = (int)i;
        snprintf(w->key, sizeof(w->key), "%s", PQgetvalue(r, k, 0));
        w->requests = num(r, k, 1);
        w->prompt_tokens = num(r, k, 2);
        w->completion_tokens = num(r, k, 3);
        w->cached_tokens = num(r, k, 4);
        w->reasoning_tokens = num(r, k, 5);
        w->estimated = num(r, k, 6);
        w->revenue_micros = num(r, k, 7);
        w->cost_micros = num(r, k, 8);
    }
    PQclear(r);
    out->rows = rows;
    out->n = n;
    return 0;
}

static int64_t pg_count(struct cmx_ledger_store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    PGresult *r = PQexec(s->c, "SELECT COUNT(*) FROM usage");
    int64_t n = PQresultStatus(r) == PGRES_TUPLES_OK ? num(r, 0, 0) : -1;
    PQclear(r);
    return n;
}

/* ---- keys and tenants (migration 2) ---------------------------------------------------- */

static void p_opt(struct params *p, int64_t v)
{
    if (v >= 0)
        p_int(p, v);
    else
        p_null(p);
}

static int64_t num_opt(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? -1 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* Runs one write (q with p) in a transaction that bumps the change stamp. *changes: rows
 * it changed. A unique violation is CMX_EINVAL. */
static int admin_write(struct pg_store *s, const char *q, struct params *p, int *changes)
{
    if (PQstatus(s->c) != CONNECTION_OK)
        PQreset(s->c);
    if (cmd(s->c, "BEGIN") != 0)
        return CMX_EIO;
    PGresult *r = PQexecParams(s->c, q, p->n, NULL, p->v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        bool unique = code != NULL && strcmp(code, "23505") == 0;
        PQclear(r);
        cmd(s->c, "ROLLBACK");
        return unique ? CMX_EINVAL : CMX_EIO;
    }
    int ch = atoi(PQcmdTuples(r));
    PQclear(r);
    if ((ch > 0 && cmd(s->c, "UPDATE admin_changes SET seq = seq + 1 WHERE id = 1") != 0) ||
        cmd(s->c, "COMMIT") != 0) {
        cmd(s->c, "ROLLBACK");
        return CMX_EIO;
    }
    if (changes != NULL)
        *changes = ch;
    return 0;
}

/* A read: the result (PQclear it) or NULL. Reconnects once when the connection dropped. */
static PGresult *query(struct pg_store *s, const char *q, struct params *p)
{
    if (PQstatus(s->c) != CONNECTION_OK)
        PQreset(s->c);
    PGresult *r = PQexecParams(s->c, q, p ? p->n : 0, NULL, p ? p->v : NULL, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        return r;
    PQclear(r);
    return NULL;
}

static int pg_key_create(struct cmx_ledger_store *base, const struct cmx_key_rec *k, int64_t now_ms)
{
    struct pg_store *s = (struct pg_store *)base;
    struct params p = {.n = 0};
    p_str(&p, k->id);
    p_str(&p, k->hash);
    p_str(&p, k->name);
    p_str(&p, k->tenant);
    p_int(&p, k->created_ms);
    p_opt(&p, k->expires_ms);
    p_int(&p, k->rpm);
    p_int(&p, k->tpm);
    p_opt(&p, k->budget_micros);
    p_int(&p, now_ms);
    return admin_write(s,
                       "INSERT INTO keys (id, hash, name, tenant, created_ms, expires_ms,"
                       " revoked_ms, rpm, tpm, budget_micros, updated_ms)"
                       " VALUES ($1,$2,$3,$4,$5,$6,NULL,$7,$8,$9,$10)",
                       &p, NULL);
}

static int pg_key_revoke(struct cmx_ledger_store *base, const char *id, int64_t now_ms,
                         bool *was_revoked)
{
    struct pg_store *s = (struct pg_store *)base;
    struct params p = {.n = 0};
    *was_revoked = false;
    p_str(&p, id);
    PGresult *r = query(s, "SELECT revoked_ms FROM keys WHERE id = $1", &p);
    if (r == NULL)
        return CMX_EIO;
    int n = PQntuples(r);
    int64_t revoked = n == 1 ? num_opt(r, 0, 0) : -1;
    PQclear(r);
    if (n != 1)
        return CMX_ENOTFOUND;
    if (revoked >= 0) {
        *was_revoked = true;
        return 0;
    }
    p.n = 0;
    p_int(&p, now_ms);
    p_str(&p, id);
    int ch = 0;
    int rc = admin_write(s,
                         "UPDATE keys SET revoked_ms = $1, updated_ms = $1 WHERE id = $2"
                         " AND revoked_ms IS NULL",
                         &p, &ch);
    if (rc == 0 && ch == 0)
        *was_revoked = true;
    return rc;
}

static int pg_keys_load(struct cmx_ledger_store *base, struct cmx_ledger_rows *out)
{
    struct pg_store *s = (struct pg_store *)base;
    out->rows = NULL;
    out->n = 0;
    PGresult *r = query(s,
                        "SELECT id, hash, name, tenant, created_ms, expires_ms, revoked_ms,"
                        " rpm, tpm, budget_micros FROM keys ORDER BY created_ms, id",
                        NULL);
    if (r == NULL)
        return CMX_EIO;
    size_t n = (size_t)PQntuples(r);
    struct cmx_key_rec *rows = calloc(n ? n : 1, sizeof(*rows));
    if (rows == NULL) {
        PQclear(r);
        return CMX_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct cmx_key_rec *k = &rows[i];
        int j = (int)i;
        snprintf(k->id, sizeof(k->id), "%s", PQgetvalue(r, j, 0));
        snprintf(k->hash, sizeof(k->hash), "%s", PQgetvalue(r, j, 1));
        snprintf(k->name, sizeof(k->name), "%s", PQgetvalue(r, j, 2));
        snprintf(k->tenant, sizeof(k->tenant), "%s", PQgetvalue(r, j, 3));
        k->created_ms = num(r, j, 4);
        k->expires_ms = num_opt(r, j, 5);
        k->revoked_ms = num_opt(r, j, 6);
        k->rpm = (int)num(r, j, 7);
        k->tpm = (int)num(r, j, 8);
        k->budget_micros = num_opt(r, j, 9);
    }
    PQclear(r);
    out->rows = rows;
    out->n = n;
    return 0;
}

static int64_t pg_stamp(struct cmx_ledger_store *base)
{
    struct pg_store *s = (struct pg_store *)base;
    PGresult *r = query(s, "SELECT seq FROM admin_changes WHERE id = 1", NULL);
    if (r == NULL)
        return -1;
    int64_t v = PQntuples(r) == 1 ? num(r, 0, 0) : -1;
    PQclear(r);
    return v;
}

static int pg_tenant_put(struct cmx_ledger_store *base, const char *name, const char *definition,
                         int64_t now_ms)
{
    struct pg_store *s = (struct pg_store *)base;
    struct params p = {.n = 0};
    p_str(&p, name);
    p_str(&p, definition);
    p_int(&p, now_ms);
    return admin_write(s,
                       "INSERT INTO tenants (name, definition, updated_ms, deleted_ms)"
                       " VALUES ($1,$2,$3,NULL) ON CONFLICT (name) DO UPDATE SET"
                       " definition = excluded.definition, updated_ms = excluded.updated_ms,"
                       " deleted_ms = NULL",
                       &p, NULL);
}

static int pg_tenant_delete(struct cmx_ledger_store *base, const char *name, int64_t now_ms)
{
    struct pg_store *s = (struct pg_store *)base;
    struct params p = {.n = 0};
    p_int(&p, now_ms);
    p_str(&p, name);
    int ch = 0;
    int rc = admin_write(s,
                         "UPDATE tenants SET deleted_ms = $1, updated_ms = $1 WHERE name = $2"
                         " AND deleted_ms IS NULL",
                         &p, &ch);
    return rc != 0 ? rc : ch == 0 ? CMX_ENOTFOUND : 0;
}

static int pg_tenants_load(struct cmx_ledger_store *base, struct cmx_ledger_rows *out)
{
    struct pg_store *s = (struct pg_store *)base;
    out->rows = NULL;
    out->n = 0;
    PGresult *r = query(s,
                        "SELECT name, definition, updated_ms FROM tenants"
                        " WHERE deleted_ms IS NULL ORDER BY name",
                        NULL);
    if (r == NULL)
        return CMX_EIO;
    size_t n = (size_t)PQntuples(r);
    struct cmx_ledger_tenant_row *rows = calloc(n ? n : 1, sizeof(*rows));
    if (rows == NULL) {
        PQclear(r);
        return CMX_ENOMEM;
    }
    out->rows = rows;
    for (size_t i = 0; i < n; i++) {
        snprintf(rows[i].name, sizeof(rows[i].name), "%s", PQgetvalue(r, (int)i, 0));
        rows[i].definition = strdup(PQgetvalue(r, (int)i, 1));
        rows[i].updated_ms = num(r, (int)i, 2);
        out->n++;
        if (rows[i].definition == NULL) {
            PQclear(r);
            cmx_ledger_tenant_rows_free(out);
            return CMX_ENOMEM;
        }
    }
    PQclear(r);
    return 0;
}

static int pg_spent(struct cmx_ledger_store *base, const char *tenant, const char *key_id,
                    int64_t from_ms, int64_t to_ms, int64_t *sum)
{
    struct pg_store *s = (struct pg_store *)base;
    struct params p = {.n = 0};
    *sum = 0;
    p_str(&p, key_id != NULL ? key_id : tenant);
    p_int(&p, from_ms);
    p_int(&p, to_ms);
    PGresult *r = query(s,
                        key_id != NULL ? "SELECT COALESCE(SUM(revenue_micros), 0) FROM usage"
                                         " WHERE key_id = $1 AND ts_ms >= $2 AND ts_ms < $3"
                                       : "SELECT COALESCE(SUM(revenue_micros), 0) FROM usage"
                                         " WHERE tenant = $1 AND ts_ms >= $2 AND ts_ms < $3",
                        &p);
    if (r == NULL)
        return CMX_EIO;
    *sum = num(r, 0, 0);
    PQclear(r);
    return 0;
}

const struct cmx_ledger_store_ops cmx_ledger_pg_ops = {
    .scheme = "postgres",
    .open = pg_open,
    .write = pg_write,
    .statement = pg_statement,
    .usage = pg_usage,
    .count = pg_count,
    .close = pg_close,
    .key_create = pg_key_create,
    .key_revoke = pg_key_revoke,
    .keys_load = pg_keys_load,
    .stamp = pg_stamp,
    .tenant_put = pg_tenant_put,
    .tenant_delete = pg_tenant_delete,
    .tenants_load = pg_tenants_load,
    .spent = pg_spent,
};
