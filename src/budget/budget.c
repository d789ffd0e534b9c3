/* Budget periods, worst-case estimates and the reservation book (see budget.h). */
#include "budget/budget.h"
#include "core/err.h"
#include "core/hash.h"

#include <pthread.h>
#include <stdio.h>
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

/* ---- what was spent before (the ledger) ------------------------------------------------ */

static int64_t (*spent_fn)(void *, const char *, const char *, int64_t, int64_t);
static void *spent_ud;

void cmx_budget_set_spent_source(int64_t (*fn)(void *ud, const char *who, const char *name,
                                               int64_t start_ms, int64_t end_ms),
                                 void *ud)
{
    spent_ud = ud;
    spent_fn = fn;
}

/* Answers are cached per (who, name, period start) for the life of the process: the source
 * is asked once per account and period, not per request. */
struct spent_entry {
    struct spent_entry *next;
    int64_t start_ms;
    int64_t value;
    char name[];
};

#define SPENT_SLOTS 1024
static pthread_mutex_t spent_mu = PTHREAD_MUTEX_INITIALIZER;
static struct spent_entry *spent_cache[SPENT_SLOTS];

/* The entry of (who, name, start_ms), created (with the source's answer, or 0) when absent.
 * Caller holds spent_mu. NULL on allocation failure. */
static struct spent_entry *spent_entry(const char *who, const char *name, int64_t start_ms,
                                       int64_t end_ms, bool ask)
{
    char id[160];
    snprintf(id, sizeof(id), "%s:%s", who, name);
    uint64_t h = cmx_fnv1a(CMX_FNV1A_INIT, id, strlen(id));
    h ^= (uint64_t)start_ms;
    struct spent_entry *e = spent_cache[h % SPENT_SLOTS];
    while (e != NULL && (e->start_ms != start_ms || strcmp(e->name, id) != 0))
        e = e->next;
    if (e != NULL)
        return e;
    size_t n = strlen(id);
    e = malloc(sizeof(*e) + n + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->name, id, n + 1);
    e->start_ms = start_ms;
    int64_t v = ask && spent_fn != NULL ? spent_fn(spent_ud, who, name, start_ms, end_ms) : 0;
    e->value = v > 0 ? v : 0;
    e->next = spent_cache[h % SPENT_SLOTS];
    spent_cache[h % SPENT_SLOTS] = e;
    return e;
}

int64_t cmx_budget_spent(const char *who, const char *name, int64_t start_ms, int64_t end_ms)
{
    pthread_mutex_lock(&spent_mu);
    struct spent_entry *e = spent_entry(who, name, start_ms, end_ms, true);
    int64_t v = e != NULL ? e->value : 0;
    pthread_mutex_unlock(&spent_mu);
    return v;
}

int cmx_budget_seed(const char *who, const char *name, int64_t start_ms, int64_t spent_micros)
{
    pthread_mutex_lock(&spent_mu);
    struct spent_entry *e = spent_entry(who, name, start_ms, start_ms + 1, false);
    if (e != NULL && spent_micros > e->value)
        e->value = spent_micros;
    pthread_mutex_unlock(&spent_mu);
    return e != NULL ? 0 : CMX_ENOMEM;
}
