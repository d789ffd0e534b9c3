/* Budget periods, worst-case estimates and the reservation book (see budget.h). */
#include "budget/budget.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int cmx_period_parse(const char *s)
{
    if (s == NULL)
        return -1;
    if (strcmp(s, "day") == 0)
        return CMX_PERIOD_DAY;
    if (strcmp(s, "week") == 0)
        return CMX_PERIOD_WEEK;
    if (strcmp(s, "month") == 0)
        return CMX_PERIOD_MONTH;
    return -1;
}

const char *cmx_period_name(enum cmx_period p)
{
    return p == CMX_PERIOD_DAY ? "day" : p == CMX_PERIOD_WEEK ? "week" : "month";
}

#define DAY_MS INT64_C(86400000)

/* Days since 1970-01-01 of y-m-1 (proleptic Gregorian; m 1..12). */
static int64_t days_from_civil(int64_t y, unsigned m)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5; /* day 1 of the month */
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void cmx_period_bounds(enum cmx_period p, int64_t now_ms, int64_t *start_ms, int64_t *end_ms)
{
    int64_t day = now_ms >= 0 ? now_ms / DAY_MS : -((-now_ms + DAY_MS - 1) / DAY_MS);
    switch (p) {
    case CMX_PERIOD_DAY:
        *start_ms = day * DAY_MS;
        *end_ms = *start_ms + DAY_MS;
        return;
    case CMX_PERIOD_WEEK: {
        /* 1970-01-01 was a Thursday: Monday-based weekday = (day + 3) mod 7 */
        int64_t wd = ((day + 3) % 7 + 7) % 7;
        *start_ms = (day - wd) * DAY_MS;
        *end_ms = *start_ms + 7 * DAY_MS;
        return;
    }
    case CMX_PERIOD_MONTH: {
        time_t t = (time_t)(day * 86400);
        struct tm tm;
        gmtime_r(&t, &tm);
        int64_t y = tm.tm_year + 1900;
        unsigned m = (unsigned)tm.tm_mon + 1;
        *start_ms = days_from_civil(y, m) * DAY_MS;
        *end_ms = (m == 12 ? days_from_civil(y + 1, 1) : days_from_civil(y, m + 1)) * DAY_MS;
        return;
    }
    }
    *start_ms = INT64_MIN;
    *end_ms = INT64_MAX;
}

int64_t cmx_budget_prompt_estimate(size_t body_len)
{
    return (int64_t)((body_len + 2) / 3);
}

/* ceil(tokens * per_mtok / 1e6), saturating. */
static int64_t tokens_cost(int64_t tokens, int64_t per_mtok)
{
    if (tokens <= 0 || per_mtok <= 0)
        return 0;
    __int128 v = (__int128)tokens * per_mtok;
    v = (v + 999999) / 1000000;
    return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

int64_t cmx_budget_worst_case(const struct cmx_price *price, int64_t prompt_tokens,
                              int64_t max_out_tokens)
{
    int64_t in = tokens_cost(prompt_tokens, price->input_per_mtok);
    int64_t out = tokens_cost(max_out_tokens, price->output_per_mtok);
    return in > INT64_MAX - out ? INT64_MAX : in + out;
}

void cmx_budget_book_init(struct cmx_budget_book *b)
{
    pthread_mutex_init(&b->mu, NULL);
}

void cmx_budget_roll(struct cmx_budget_acct *a, int64_t now_ms)
{
    int64_t start, end;
    cmx_period_bounds(a->period, now_ms, &start, &end);
    if (start != a->period_start_ms) {
        a->period_start_ms = start;
        a->spent_micros = 0;
    }
}

bool cmx_budget_reserve(struct cmx_budget_book *b, struct cmx_budget_acct *accts[2], int64_t amount,
                        int64_t now_ms, struct cmx_budget_hold *hold, int *short_acct)
{
    memset(hold, 0, sizeof(*hold));
    if (amount < 0)
        amount = 0;
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < 2; i++) {
        struct cmx_budget_acct *a = accts[i];
        if (a == NULL)
            continue;
        cmx_budget_roll(a, now_ms);
        int64_t used = a->spent_micros + a->reserved_micros;
        if (used > a->limit_micros || amount > a->limit_micros - used) {
            pthread_mutex_unlock(&b->mu);
            *short_acct = i;
            return false;
        }
    }
    for (int i = 0; i < 2; i++) {
        struct cmx_budget_acct *a = accts[i];
        if (a == NULL)
            continue;
        a->reserved_micros += amount;
        hold->acct[i] = a;
        hold->period_start_ms[i] = a->period_start_ms;
    }
    hold->amount_micros = amount;
    pthread_mutex_unlock(&b->mu);
    return true;
}

void cmx_budget_settle(struct cmx_budget_book *b, struct cmx_budget_hold *hold,
                       int64_t actual_micros, int64_t now_ms)
{
    if (actual_micros < 0)
        actual_micros = 0;
    pthread_mutex_lock(&b->mu);
    for (int i = 0; i < 2; i++) {
        struct cmx_budget_acct *a = hold->acct[i];
        if (a == NULL)
            continue;
        a->reserved_micros -= hold->amount_micros;
        cmx_budget_roll(a, now_ms);
        if (a->period_start_ms == hold->period_start_ms[i])
            a->spent_micros += actual_micros;
    }
    pthread_mutex_unlock(&b->mu);
    memset(hold, 0, sizeof(*hold));
}

int64_t cmx_budget_remaining(struct cmx_budget_book *b, struct cmx_budget_acct *a, int64_t now_ms)
{
    pthread_mutex_lock(&b->mu);
    cmx_budget_roll(a, now_ms);
    int64_t r = a->limit_micros - a->spent_micros - a->reserved_micros;
    pthread_mutex_unlock(&b->mu);
    return r < 0 ? 0 : r;
}

/* ---- the process-wide accounts ---------------------------------------------------- */

struct named_acct {
    struct named_acct *next;
    struct cmx_budget_acct acct;
    char name[];
};

#define ACCT_BUCKETS 1024
static struct cmx_budget_book global_book = {.mu = PTHREAD_MUTEX_INITIALIZER};
static struct named_acct *accts[ACCT_BUCKETS];

struct cmx_budget_book *cmx_budget_global(void)
{
    return &global_book;
}

struct cmx_budget_acct *cmx_budget_account(const char *name, int64_t limit_micros,
                                           enum cmx_period period)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    pthread_mutex_lock(&global_book.mu);
    struct named_acct *a = accts[h % ACCT_BUCKETS];
    while (a != NULL && strcmp(a->name, name) != 0)
        a = a->next;
    if (a == NULL) {
        size_t n = strlen(name);
        a = calloc(1, sizeof(*a) + n + 1);
        if (a == NULL) {
            pthread_mutex_unlock(&global_book.mu);
            return NULL;
        }
        memcpy(a->name, name, n + 1);
        a->acct.period_start_ms = INT64_MIN;
        a->next = accts[h % ACCT_BUCKETS];
        accts[h % ACCT_BUCKETS] = a;
    }
    a->acct.limit_micros = limit_micros;
    if (a->acct.period != period) {
        a->acct.period = period;
        a->acct.period_start_ms = INT64_MIN; /* a new period kind starts afresh */
    }
    pthread_mutex_unlock(&global_book.mu);
    return &a->acct;
}
