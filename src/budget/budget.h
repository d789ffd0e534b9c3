/* Budgets: before a request goes upstream its worst-case cost is reserved against the
 * budgets of its key and tenant for the current period; when it ends the reservation is
 * settled to the metered cost (or released when nothing was billed). The reservations are
 * quota buckets of the rate limiter (src/limits/: in-process, or Redis for a fleet), taken
 * all-or-nothing with the rate limits, so concurrent requests can never together spend more
 * than a budget. This file holds the arithmetic around them: periods (UTC calendar days, ISO
 * weeks from Monday, months), estimates, and what the ledger says was spent before. Money
 * is integer micro-units. */
#ifndef CMX_BUDGET_BUDGET_H
#define CMX_BUDGET_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

enum cmx_period { CMX_PERIOD_DAY, CMX_PERIOD_WEEK, CMX_PERIOD_MONTH };

/* Parses "day", "week" or "month"; -1 otherwise. */
int cmx_period_parse(const char *s);

/* "day", "week" or "month". */
const char *cmx_period_name(enum cmx_period p);

/* The UTC period containing unix time now_ms: [*start_ms, *end_ms). */
void cmx_period_bounds(enum cmx_period p, int64_t now_ms, int64_t *start_ms, int64_t *end_ms);

/* Conservative prompt-token estimate for a request body of len bytes (a token is never
 * shorter than 3 bytes of JSON text in practice for the tokenizers in use): ceil(len/3). */
int64_t cmx_budget_prompt_estimate(size_t body_len);

/* Worst-case cost in micro-units, rounded up: prompt_tokens at the input price plus
 * max_out_tokens at the output price (prices per 1M tokens in micro-units). Saturates at
 * INT64_MAX instead of overflowing. */
int64_t cmx_budget_worst_case(const struct cmx_price *price, int64_t prompt_tokens,
                              int64_t max_out_tokens);

/* What the ledger says tenant or key (who "t" or "k", name) has spent in [start_ms, end_ms):
 * a budget bucket's starting level when the limiter has none (a restart, a new period). 0
 * when it cannot tell. Set by the ledger at start (cmx_budget_set_spent_source). Thread:
 * any. */
int64_t cmx_budget_spent(const char *who, const char *name, int64_t start_ms, int64_t end_ms);
void cmx_budget_set_spent_source(int64_t (*fn)(void *ud, const char *who, const char *name,
                                               int64_t start_ms, int64_t end_ms),
                                 void *ud);

/* Records that tenant or key (who "t" or "k", name) had spent spent_micros in the period
 * starting at start_ms (the keys refresher reads it from the ledger before publishing the
 * keys): cmx_budget_spent() answers at least that from then on. 0 or CMX_ENOMEM. */
int cmx_budget_seed(const char *who, const char *name, int64_t start_ms, int64_t spent_micros);

/* Completion tokens assumed when a request sets no max_tokens. */
#define CMX_DEFAULT_MAX_TOKENS 1024

/* What the ledger says tenant or key (who "t" or "k", name) has spent in [start_ms, end_ms):
 * a budget bucket's starting level when the limiter has none (a restart, a new period). 0
 * when it cannot tell. Set by the ledger at start (cmx_budget_set_spent_source). Thread:
 * any. */
int64_t cmx_budget_spent(const char *who, const char *name, int64_t start_ms, int64_t end_ms);
void cmx_budget_set_spent_source(int64_t (*fn)(void *ud, const char *who, const char *name,
                                               int64_t start_ms, int64_t end_ms),
                                 void *ud);

/* Completion tokens assumed when a request sets no max_tokens. */
#define CMX_DEFAULT_MAX_TOKENS 1024

/* One budget account (a key's or a tenant's): limit per period, what the current period has
 * spent, and what requests in flight have reserved. */
struct cmx_budget_acct {
    int64_t limit_micros;
    enum cmx_period period;
    int64_t period_start_ms; /* of the period spent belongs to */
    int64_t spent_micros;
    int64_t reserved_micros;
};

/* A reservation held by one request. */
struct cmx_budget_hold {
    struct cmx_budget_acct *acct[2]; /* key's and tenant's (NULL when none) */
    int64_t amount_micros;
    int64_t period_start_ms[2]; /* the period each was reserved in */
};

/* The process-wide accounts table lock: reserve/settle hold it for a few additions. */
struct cmx_budget_book {
    pthread_mutex_t mu;
};

void cmx_budget_book_init(struct cmx_budget_book *b);

/* Rolls a's period forward when now_ms is past it (spent starts at 0; reservations in
 * flight stay). Caller holds the book's lock (or owns a exclusively). */
void cmx_budget_roll(struct cmx_budget_acct *a, int64_t now_ms);

/* Reserves amount against every non-NULL account in accts[0..2) at now_ms, all or none:
 * each must have spent + reserved + amount <= limit. Returns true and fills hold, or
 * false with *short_acct the index of the first account that could not cover it. */
bool cmx_budget_reserve(struct cmx_budget_book *b, struct cmx_budget_acct *accts[2], int64_t amount,
                        int64_t now_ms, struct cmx_budget_hold *hold, int *short_acct);

/* Ends a hold: the reservation is released and actual_micros (>= 0; 0 releases) is added to
 * the spent of each account, when the account is still in the period the hold was made in
 * (a request that straddles a period boundary is charged to the old period, which the
 * ledger keeps). The hold is cleared. */
void cmx_budget_settle(struct cmx_budget_book *b, struct cmx_budget_hold *hold,
                       int64_t actual_micros, int64_t now_ms);

/* The process-wide book and its accounts, by name ("t:<tenant>" or "k:<key id>"): created
 * on first use with limit and period, and updated to them when the config changes. The
 * returned account lives until the process ends. NULL on allocation failure. Thread: any. */
struct cmx_budget_book *cmx_budget_global(void);
struct cmx_budget_acct *cmx_budget_account(const char *name, int64_t limit_micros,
                                           enum cmx_period period);

/* What remains of a at now_ms (limit - spent - reserved, never below 0). */
int64_t cmx_budget_remaining(struct cmx_budget_book *b, struct cmx_budget_acct *a, int64_t now_ms);

#endif
