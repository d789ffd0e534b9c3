/* The ledger: one usage record per request that reached an upstream, its revenue and cost,
 * and the revenue-share accruals it earns, written off the request path.
 *
 * Workers build a record (cmx_ledger_prepare: integer arithmetic only, no I/O) and hand it
 * to the process's ledger (cmx_ledger_submit) through a short-critical-section queue. One
 * writer thread commits what is queued in batches (or one record per transaction in
 * per_request mode) into a store (store.h: SQLite or PostgreSQL). Caps are applied by the
 * store inside the transaction that inserts the record, under a row lock, so several
 * gateways sharing one database never exceed a cap together. When the store is unreachable
 * the records go to an append-only spool file, replayed when it returns; replay is
 * idempotent because the request id is unique in the store.
 *
 * Money is integer micro-units; rates are parts per million; each step rounds once,
 * half-even (docs in README "Ledger"). */
#ifndef CMX_LEDGER_LEDGER_H
#define CMX_LEDGER_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct cmx_config;
struct cmx_model_cfg;
struct cmx_deployment_cfg;
struct cmx_price;
struct cmx_usage;

#define CMX_LEDGER_MAX_SHARES 16  /* revenue-share terms recorded per request */
#define CMX_LEDGER_NAME       128 /* bytes of a name field, NUL included (longer: cut) */

/* One revenue-share term a request's revenue falls under (before the cap is applied). In a
 * record, the strings live in the record's own block (cmx_ledger_rec_new). */
struct cmx_ledger_accrual {
    const char *agreement; /* "id@effective" of the version in force */
    const char *payee;     /* who is paid */
    const char *currency;  /* ISO 4217 */
    int term;              /* index of the term in its version (cap identity) */
    int64_t rate_ppm;      /* rate, parts per million */
    bool has_cap;          /* a cumulative cap applies */
    int64_t cap_micros;    /* the cap (when has_cap) */
    int64_t amount_micros; /* revenue x rate, rounded half-even */
};

/* A usage record: one malloc'd block (cmx_ledger_rec_new) holding the struct, acc[] and
 * every string the pointers below point to (never NULL: "" when none). Compact on purpose:
 * a few hundred bytes cross from a worker to the writer per request. */
struct cmx_ledger_rec {
    struct cmx_ledger_rec *next;     /* queue link (owned by the ledger) */
    char record_id[40];              /* unique key: time-ordered, made by cmx_ledger_prepare */
    const char *request_id;          /* x-request-id (a client may reuse its own) */
    int64_t ts_ms;                   /* completion time (cmx_clock_now_ms) */
    const char *model;               /* public model */
    const char *product;             /* product under agreements, "" when ungoverned */
    const char *provider;            /* provider that served */
    const char *cloud;               /* its cloud label */
    const char *region;              /* its region, "" when none */
    const char *agreements;          /* versions in force, "id@eff, id@eff", "" none */
    int64_t prompt_tokens;           /* includes cached */
    int64_t completion_tokens;       /* includes reasoning */
    int64_t cached_tokens;           /* prompt tokens served from cache */
    int64_t reasoning_tokens;        /* completion tokens spent reasoning */
    bool estimated;                  /* the upstream reported no usage: tokens estimated */
    bool stream;                     /* streamed answer */
    int status;                      /* status sent to the client (499: went away) */
    int64_t latency_ms;              /* request start to end */
    int64_t revenue_micros;          /* from the deployment's price (0 without one) */
    int64_t cost_micros;             /* from the deployment's cost (0 without one) */
    const char *tenant;              /* the caller's tenant, "" in open mode (NULL in the store) */
    const char *key_id;              /* the caller's virtual key id, "" in open mode */
    size_t dims_len;                 /* model ... agreements laid out back to back, each
                                      * NUL-ended, from model on (set by cmx_ledger_rec_new) */
    size_t n_acc;                    /* entries of acc */
    struct cmx_ledger_accrual acc[]; /* the terms in force over this revenue */
};

/* Makes a record from a template: t's numbers and record_id, its strings (NULL = "") and
 * n_acc (at most CMX_LEDGER_MAX_SHARES) accruals from acc, their strings too, copied into
 * one malloc'd block (free with free()). Strings are cut to CMX_LEDGER_NAME - 1 bytes
 * (agreements: twice that; tenant 63, key id 31, currency 7). NULL on allocation failure.
 * Thread: any. */
struct cmx_ledger_rec *cmx_ledger_rec_new(const struct cmx_ledger_rec *t,
                                          const struct cmx_ledger_accrual *acc, size_t n_acc);

/* ---- arithmetic (pure; unit-tested) ------------------------------------------------------- */

/* n / d rounded half-even (d > 0; any sign of n). */
int64_t cmx_ledger_div_half_even(__int128 n, int64_t d);

/* Revenue in micro-units of tokens at price p (micro-units per 1M tokens):
 * ((prompt - cached) x input + cached x cached_input (input when -1) + completion x output)
 * / 1e6, rounded half-even once. cached is clamped to [0, prompt]. Saturates at INT64_MAX. */
int64_t cmx_ledger_revenue(const struct cmx_price *p, int64_t prompt, int64_t completion,
                           int64_t cached);

/* revenue x rate_ppm / 1e6, rounded half-even. */
int64_t cmx_ledger_share(int64_t revenue_micros, int64_t rate_ppm);

/* Applies a cap to one accrual: prev is what the (agreement, payee, term) has accrued so
 * far. *accrued = the part up to the cap (all of amount without a cap), *over = the rest.
 * Never negative; prev above the cap leaves nothing to accrue. */
void cmx_ledger_cap_split(int64_t amount, bool has_cap, int64_t cap, int64_t prev, int64_t *accrued,
                          int64_t *over);

/* Parses a rate written as a decimal ("0.2", "0.075", "1") into parts per million; more
 * than six fraction digits (unless zeros), negatives and rates above 1 are CMX_EINVAL. */
int cmx_ledger_parse_rate(const char *s, size_t len, int64_t *ppm);

/* A record id: 12 hex digits of ts_ms, 16 of a per-process random salt, 8 of a counter.
 * Unique across gateways and restarts, and time-ordered, so that inserts into the store's
 * primary key stay near its end. Into buf (>= 37 bytes). Thread: any. */
void cmx_ledger_record_id(int64_t ts_ms, char *buf, size_t cap);

/* ---- building a record (worker threads) ---------------------------------------------------- */

/* What the proxy knows when a request that reached an upstream completes. */
struct cmx_ledger_input {
    const struct cmx_config *cfg;         /* the snapshot that served it */
    const char *request_id;               /* x-request-id */
    const struct cmx_model_cfg *model;    /* public model */
    const struct cmx_deployment_cfg *dep; /* deployment that served */
    const struct cmx_usage *usage;        /* as reported (usage->reported false: none) */
    int status;                           /* status sent to the client */
    uint64_t latency_us;                  /* request start to end */
    bool stream;                          /* streamed */
    size_t request_bytes;                 /* body sent by the client (estimates) */
    uint64_t output_text_bytes;           /* generated text relayed (estimates) */
    const char *agreements;               /* cmx_agreements_applied(), NULL when none */
    int64_t at_ms;                        /* completion time */
    const char *tenant;                   /* the caller's tenant, NULL in open mode */
    const char *key_id;                   /* the caller's key id, NULL in open mode */
};

/* The tokens of a request whose upstream reported no usage: about 4 bytes a token, the
 * prompt from the request body, the completion from the generated text relayed to the
 * client. The ledger records them flagged `estimated`; budgets and TPM buckets settle to
 * the same numbers. Thread: any. */
static inline void cmx_ledger_estimate(uint64_t request_bytes, uint64_t output_text_bytes,
                                       int64_t *prompt_tokens, int64_t *completion_tokens)
{
    *prompt_tokens = (int64_t)((request_bytes + 3) / 4);
    *completion_tokens = (int64_t)((output_text_bytes + 3) / 4);
}

/* Builds the record of in (malloc'd; free with free()), with revenue, cost and the
 * revenue-share terms in force at in->at_ms over its cloud and product. Without reported
 * usage the tokens are estimated (cmx_ledger_estimate()) and flagged. NULL on allocation failure.
 * Thread: any; no I/O. */
struct cmx_ledger_rec *cmx_ledger_prepare(const struct cmx_ledger_input *in);

/* ---- the spool file's format ------------------------------------------------------------ */

/* Appends r to b as one spool line: "R1", then each field, tab-separated (tab, newline and
 * backslash escaped), then the tenant and key id, then '\n'. Lines without the last two
 * (written before they were recorded) still parse, as open-mode records. */
void cmx_ledger_spool_line(struct cmx_buf *b, const struct cmx_ledger_rec *r);

/* Parses one spool line (NUL-terminated, without its '\n'; modified in place) into a
 * record (malloc'd; free()), or NULL when it is not a whole, valid record. */
struct cmx_ledger_rec *cmx_ledger_spool_parse(char *line);

/* ---- the process's ledger ---------------------------------------------------------------- */

enum cmx_ledger_durability {
    CMX_LEDGER_BATCHED,     /* the writer commits what is queued in one transaction */
    CMX_LEDGER_PER_REQUEST, /* one transaction per record, synchronous commit */
};

struct cmx_ledger;

/* The ledger URL a config asks for: its `ledger:` url; when absent sqlite://cloudmux.db in
 * the config file's directory; a relative sqlite path is taken from that directory too.
 * Written into buf (NUL-terminated). Returns buf, or NULL when the ledger is off
 * (`ledger: off`). */
const char *cmx_ledger_url(const struct cmx_config *cfg, char *buf, size_t cap);

/* The spool file for url: `ledger.spool` of the config (relative: to the config's
 * directory), else the SQLite file + ".spool", else cloudmux-ledger.spool next to the
 * config. Written into buf; returns buf. */
const char *cmx_ledger_spool_path(const struct cmx_config *cfg, const char *url, char *buf,
                                  size_t cap);

/* Opens the store at url (migrations applied) and starts the writer thread. spool: the
 * spool file (cmx_ledger_spool_path). When the store cannot be
 * reached the ledger still starts, spooling, and retries every second. Returns 0 and *out,
 * or CMX_EINVAL (unknown scheme, message in err) / CMX_EIO (spool not writable) /
 * CMX_ENOMEM. */
int cmx_ledger_start(const char *url, enum cmx_ledger_durability d, const char *spool,
                     struct cmx_ledger **out, char *err, size_t err_cap);

/* Queues rec (ownership passes to the ledger). Never blocks on I/O. Thread: any. */
void cmx_ledger_submit(struct cmx_ledger *l, struct cmx_ledger_rec *rec);

/* Blocks until everything submitted before the call is committed or spooled. */
void cmx_ledger_flush(struct cmx_ledger *l);

/* Drains the queue (commit, or spool when the store is down), stops the writer and frees
 * everything. NULL is ignored. */
void cmx_ledger_stop(struct cmx_ledger *l);

/* Records committed / spooled so far (for tests and the bench). */
uint64_t cmx_ledger_committed(const struct cmx_ledger *l);
uint64_t cmx_ledger_spooled(const struct cmx_ledger *l);

/* The ledger the proxy hands records to (set by serve; NULL: metering off). */
void cmx_ledger_set_global(struct cmx_ledger *l);

/* The proxy's hand-off: builds the record of in and queues it on the global ledger. A
 * no-op when there is none. Thread: any worker. */
void cmx_ledger_record(const struct cmx_ledger_input *in);

/* cmx_ledger_flush() on the global ledger (admin reports read what was queued before
 * them). A no-op without one. */
void cmx_ledger_flush_global(void);

/* ---- reports (CLI and admin API) ------------------------------------------------------------ */

enum cmx_ledger_format {
    CMX_LEDGER_FORMAT_TABLE,
    CMX_LEDGER_FORMAT_CSV,
    CMX_LEDGER_FORMAT_JSON,
};

/* The statement of payee for period ("YYYY-MM", or "YYYY-MM-DD" for a day; NULL: all
 * time) from the store at url, in format f, appended to out. One row per (agreement
 * version, term): revenue base, rate, accrued, over-cap, cap remaining, requests; totals
 * are the sums of the accrual rows. Returns 0; CMX_EINVAL with err for a bad argument or
 * URL; CMX_EIO with err when the store cannot be read. */
int cmx_ledger_statement(const char *url, const char *payee, const char *period,
                         enum cmx_ledger_format f, struct cmx_buf *out, char *err, size_t err_cap);

/* Usage totals for period (as above) grouped by "model", "cloud", "provider", "day" or NULL
 * (one total row). Same conventions. */
int cmx_ledger_usage(const char *url, const char *period, const char *by, enum cmx_ledger_format f,
                     struct cmx_buf *out, char *err, size_t err_cap);

/* Checks a period argument: "YYYY-MM" or "YYYY-MM-DD". */
bool cmx_ledger_period_ok(const char *period);

#endif
